"""Retrieval by generation: queries, baselines, metrics, reports and the `rbg` command line."""
