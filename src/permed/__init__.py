"""permed: star-allele calling, phenotypes and drug advice from GRCh38 VCFs, for one patient or a biobank.

    import permed
    res = permed.call("patient.vcf.gz", medications=["clopidogrel"])
    res.patient("P1").genes["CYP2C19"].phenotypes
    cohort = permed.cohort(["chr10.bcf", "chr22.bcf"], populations="pop.tsv")

Names are imported on first use, so `import permed` stays cheap (docs/api.md).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "call": "permed.api",
    "cohort": "permed.api",
    "load_kb": "permed.api",
    "Engine": "permed.engine",
    "Inputs": "permed.engine",
    "VcfInput": "permed.engine",
    "Result": "permed.engine",
    "Options": "permed.options",
    "CohortTables": "permed.biobank.output",
    "PatientReport": "permed.report.model",
    "CallSet": "permed.matcher.callset",
    "PhenotypeSet": "permed.phenotype.phenotype_set",
    "KnowledgeBase": "permed.kb.model",
    "PermedError": "permed.errors",
    "UserError": "permed.errors",
    "InputFileError": "permed.errors",
    "OutsideCallsError": "permed.errors",
    "OutputError": "permed.errors",
    "ConfigurationError": "permed.errors",
    "MissingExtraError": "permed.errors",
    "KnowledgeBaseError": "permed.errors",
    "ServiceError": "permed.errors",
    "examples": None,
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'permed' has no attribute {name!r}")
    module = _EXPORTS[name]
    value = importlib.import_module(f"permed.{name}") if module is None else getattr(
        importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
