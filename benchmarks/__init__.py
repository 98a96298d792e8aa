"""End-to-end benchmarks of fencewatch on one machine (issue 4): `python -m benchmarks.pipeline`."""
