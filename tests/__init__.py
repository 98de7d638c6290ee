"""neardex's tests, a package so that `tests.support` is importable from every tier, from the
benchmarks and by the trial scripts run with `python -m`."""
