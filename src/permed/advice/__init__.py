"""Advice stage: gene reports (+ the patient's medications) -> matched guideline recommendations."""
