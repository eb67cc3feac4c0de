"""Stage 2: genotype arrays -> gene calls (PharmCAT named-allele-matcher semantics)."""
