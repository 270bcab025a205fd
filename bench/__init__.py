"""Benchmarks that print their figures against a baseline measured in the same run.

Each runs alone with `python -m bench.<name> [--quick]`; `python -m bench` (`make bench`)
runs them all. They are not tests and never run in CI.
"""
