"""Benchmarks: sliding-window baseline, amortization and latency
(installed as fcn_deploy.benchmarks)."""
