"""Example workloads (models and their inputs) for the demo, the tests and the benchmarks."""
