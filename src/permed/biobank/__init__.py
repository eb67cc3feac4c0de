"""Biobank scale: cohort tables (Parquet), population frequencies, summary page, queries."""
