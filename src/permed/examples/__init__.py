"""An embedded example patient: a small GRCh38 VCF (CYP2C19 *2/*17, DPYD c.1905+1G>A heterozygous).

    >>> from permed.examples import example_vcf
    >>> example_vcf().name
    'example_patient.vcf'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE_SAMPLE = "EXAMPLE-PATIENT"


def example_vcf() -> Path:
    """Path of the example patient's VCF (inside the installed package)."""
    return Path(str(resources.files("permed.examples") / "example_patient.vcf"))
