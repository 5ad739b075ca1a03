"""diffgym.envs."""
