"""diffgym.rewards."""
