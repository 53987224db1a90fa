"""vessel-seg device/sim package."""
