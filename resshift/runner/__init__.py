"""Evaluation runner: Hydra app, resumable result stores, phases, sharding."""
