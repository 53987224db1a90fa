"""vessel-seg pipeline package."""
