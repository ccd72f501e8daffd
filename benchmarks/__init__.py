"""Benchmarks, run by hand: ``python -m benchmarks.quality TASK --data-root ../shared/data``."""
