"""Experiment data in, decisions out: ingestion (DuckDB), the SQL, the analysis run and its renderings."""
