"""Benchmarks, code and results side by side; run from the repository root: python -m benchmarks.<name>."""
