"""diffgym.benchmarks: the evaluation protocol (:mod:`~diffgym.benchmarks.evaluate`), metrics,
grid-search baselines (:mod:`~diffgym.benchmarks.grid_families`, :mod:`~diffgym.benchmarks.grid`,
:mod:`~diffgym.benchmarks.ray_runner`), the comparison (:mod:`~diffgym.benchmarks.compare`,
:mod:`~diffgym.benchmarks.report`), the suite over task seeds (:mod:`~diffgym.benchmarks.suite`)
and the inference-overhead measurement
(:mod:`~diffgym.benchmarks.overhead`). One-off studies live in ``benchmarks/scripts/`` outside the
installed package."""
