"""What tests, trial scripts and benchmarks share that is not a fixture: where things are, how to
start and stop a real `neardex serve`, and the long trial and fuzz runs whose short forms the
suite runs. Fixtures stay in the conftest.py files."""
