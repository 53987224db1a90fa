"""The proving ground (``vessel-seg stress``): the real daemon under load, crashes, hostile input and faults.

Its harness (``supervised``, ``inputs``, ``checks``) is what the integration tests use too.
"""
