"""Dagster assets and asset checks. Thin: they call ml/ and describe results as metadata."""
