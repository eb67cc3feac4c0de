"""permed: star-allele calling and pharmacogenomic interpretation from GRCh38 VCFs."""

__version__ = "0.1.0"
