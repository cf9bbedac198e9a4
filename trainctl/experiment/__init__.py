"""Experiments: many configs planned from one file, run on dask, compared."""
