"""What training shares with the appliance: preprocessing, dataset pairing and scoring.

Change these only with a retrain in mind: a model bundle records the preprocessing it was trained with.
"""
