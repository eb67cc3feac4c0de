"""Stage 1: VCF/BCF -> genotype arrays (samples x definition positions)."""
