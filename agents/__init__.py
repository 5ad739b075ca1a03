"""diffgym.agents."""
