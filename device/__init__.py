"""vessel-seg device package."""
