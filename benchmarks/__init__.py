"""Benchmarks: python -m benchmarks.bench_conv (see each module's docstring)."""
