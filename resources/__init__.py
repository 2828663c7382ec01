"""Dagster resources and IO managers: where data lives, how artifacts are stored and loaded."""
