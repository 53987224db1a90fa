"""vessel-seg camera package."""
