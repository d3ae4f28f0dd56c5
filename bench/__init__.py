"""Benchmarks run by hand (not in CI); see bench/README.md."""
