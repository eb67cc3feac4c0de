"""The public Python API: `permed.call` and `permed.cohort` over one engine per process.

    >>> import permed
    >>> res = permed.call(permed.examples.example_vcf(), medications=["clopidogrel"])
    >>> res.patient("EXAMPLE-PATIENT").genes["CYP2C19"].phenotypes
    ['Intermediate Metabolizer']
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from permed.errors import MissingExtraError
from permed.options import Options

if TYPE_CHECKING:
    from permed.biobank.output import CohortTables
    from permed.biobank.populations import Populations
    from permed.engine import Engine, Result
    from permed.kb.model import KnowledgeBase


@lru_cache(maxsize=4)
def _engine(kb: str | None) -> Engine:
    from permed.engine import Engine

    return Engine(Path(kb) if kb else None)


def engine(kb: KnowledgeBase | str | Path | None = None) -> Engine:
    """The engine for a knowledge base (default: the packaged one), built once per process."""
    from permed.engine import Engine

    if kb is not None and not isinstance(kb, (str, Path)):
        return Engine(kb)
    return _engine(str(kb) if kb else None)


def load_kb(path: str | Path | None = None) -> KnowledgeBase:
    """A knowledge base: the packaged one, or a file written by `permed kb build`."""
    from permed.kb.load import load_kb as _load

    return _load(Path(path) if path else None)


def call(vcfs=(), *, outside_calls=(), outside_calls_format: str | None = None, medications=None,
         patient: str | None = None, kb: KnowledgeBase | str | Path | None = None, options: Options | None = None,
         **option_values) -> Result:
    """Call, interpret and advise every sample of the given VCF/BCF files (a path or a list of paths).

    `outside_calls`: PharmCAT-format TSV files (for every sample) or CYP2D6 callers' output (Cyrius,
    Aldy, StellarPGx, PyPGx: for the samples they name; without a VCF, one patient per sample);
    `outside_calls_format` forces the format (default: detected per file); `medications`: drug names,
    RxNorm CUIs or ATC codes (list or comma-separated); `patient`: the name of a patient known only from
    PharmCAT-format outside calls. Options (`genes`, `missing_to_ref`, `all_matches`, `workers`, `build`, `min_gp`,
    `min_info`...) as
    keywords or an `Options`."""
    from permed.engine import Inputs

    opts = (options or Options()).replace(**option_values) if option_values else (options or Options())
    inputs = Inputs.of(vcfs=vcfs, outside_calls=outside_calls, medications=medications, patient=patient,
                       outside_calls_format=outside_calls_format)
    return engine(kb).run(inputs, opts)


def cohort(vcfs, *, outside_calls=(), outside_calls_format: str | None = None,
           populations: str | Path | Populations | None = None, kb: KnowledgeBase | str | Path | None = None,
           options: Options | None = None, **option_values) -> CohortTables:
    """Call a cohort (no per-patient advice or evidence) and return its tables: `.calls`,
    `.frequencies`, `.samples` as pyarrow Tables (`.to_polars()`), `.write(out_dir)` for the files
    `permed cohort` writes. `outside_calls`: e.g. a Cyrius or Aldy file whose CYP2D6 calls are matched
    to the cohort's samples by name (as for `call`)."""
    try:
        from permed.biobank.output import CohortTables
    except ImportError as exc:  # pyarrow & co. come with permed[cohort]
        raise (MissingExtraError.from_import_error(exc) or exc) from None
    from permed.biobank.populations import Populations, read_populations
    from permed.engine import Inputs

    base = (options or Options()).replace(evidence=False, advice=False, sample_warnings=False)
    opts = base.replace(**option_values) if option_values else base
    pops = populations if isinstance(populations, Populations) or populations is None else read_populations(
        Path(populations))
    inputs = Inputs.of(vcfs=vcfs, outside_calls=outside_calls, outside_calls_format=outside_calls_format)
    return CohortTables(engine(kb).run(inputs, opts), pops)
