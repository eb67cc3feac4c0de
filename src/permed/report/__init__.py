"""Outputs: calls.tsv (PharmCAT calls-only columns) and per-sample report JSON."""
