"""How a run calls and what it computes: one options object for the engine, the CLI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from permed.errors import ConfigurationError

GENOME_BUILDS = ("GRCh38", "GRCh37", "auto")


def genome_build(value: str | None) -> str:
    """A --build value in its canonical spelling (GRCh38, GRCh37, auto; any case)."""
    for b in GENOME_BUILDS:
        if str(value if value is not None else "auto").strip().lower() == b.lower():
            return b
    raise ConfigurationError(f"--build: {value!r} is not one of {', '.join(GENOME_BUILDS)}")


@dataclass(frozen=True)
class Options:
    """Options of a run. The calling options (genes ... cyp2d6_from_vcf) change calls and are
    recorded in every report; the others only change how the work is done or what is kept."""

    genes: tuple[str, ...] | None = None  # genes to call (default: every gene of the knowledge base)
    missing_to_ref: bool = False  # read definition positions absent from the file as homozygous reference
    require_pass: bool = False  # ignore records whose FILTER is not PASS (PharmCAT uses every record)
    find_combinations: bool = False  # research mode: combination and partial alleles
    all_matches: bool = False  # every matching diplotype, not only the top-scoring ones
    cyp2d6_from_vcf: bool = False  # call CYP2D6 from SNVs/indels (blind to copy number)
    build: str = "auto"  # genome build of the VCF inputs: GRCh38, GRCh37, or auto (from header and records)
    min_gp: float = 0.9  # imputed/array data: a call needs its genotype probability >= this (DS within 1 - this)
    min_info: float = 0.8  # imputation quality (R2, DR2, INFO) below this makes a position missing for everyone
    workers: int = 1  # worker processes on this machine
    chunk_size: int | None = None  # samples held in memory at once per unit of work (None: all)
    split_samples: int | None = None  # also split each file into units of this many samples
    parallel_regions: bool = False  # split indexed files by chromosome even on one worker (clusters)
    use_index: bool = True  # indexed files: read only windows around definition positions
    evidence: bool = True  # per-position evidence in each call (reports show it; cohort tables do without)
    advice: bool = True  # match drug recommendations (cohort tables do without)
    sample_warnings: bool = True  # per-sample notes on unusable genotypes (reports show them; cohort tables do without)

    RECORDED = ("missing_to_ref", "require_pass", "find_combinations", "all_matches", "cyp2d6_from_vcf")

    def __post_init__(self) -> None:
        if self.genes is not None:
            object.__setattr__(self, "genes", tuple(self.genes))
        object.__setattr__(self, "build", genome_build(self.build))
        for name, low, high in (("min_gp", 0.5, 1.0), ("min_info", 0.0, 1.0)):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
            # above 0.5: two genotypes cannot both reach the threshold, so a call is never a pick between equals
            if value is None or not (low < value <= high if name == "min_gp" else low <= value <= high):
                raise ConfigurationError(f"--{name.replace('_', '-')}: {getattr(self, name)!r} is not a number in "
                                         f"{'(0.5, 1]' if name == 'min_gp' else '[0, 1]'}")
            object.__setattr__(self, name, value)
        for name in ("workers", "chunk_size", "split_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"--{name.replace('_', '-')}: {value!r} is not a whole number >= 1")

    def recorded(self) -> dict[str, bool]:
        """The options that change calls, as every report records them."""
        return {name: getattr(self, name) for name in self.RECORDED}

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Options:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes) -> Options:
        return type(self)(**{**asdict(self), **changes})
