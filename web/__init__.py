"""vessel-seg web package."""
