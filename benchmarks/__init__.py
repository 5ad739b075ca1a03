"""diffgym.benchmarks."""
