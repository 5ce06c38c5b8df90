"""Benchmarks (`berth bench`): harness, scenarios, failover, runner and raw docker-py
baselines. Imported only by the CLI; tests never import it (an import-linter contract)."""
