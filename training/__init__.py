"""vessel-seg training package."""
