"""Reproducible performance measurements: ``python -m benchmarks [--quick]``.

Every figure is a ratio or a count measured side by side in one run on one
backend, so a shared, noisy machine still gives comparable numbers. Nothing
here is asserted: the benchmarks print and record, they never fail CI.
"""
