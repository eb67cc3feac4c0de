"""Interpretation stage: gene calls (and outside calls) -> phenotypes, activity scores, lookup keys."""
