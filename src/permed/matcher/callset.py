"""The matching stage's result for any number of samples: gene calls stored as arrays over samples.

A `CallSet` can be saved as JSON (`permed.calls/1`) and loaded again, so the interpretation stage
can run on calls made elsewhere or earlier (as PharmCAT's stages exchange JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from permed.documents import Document, load_document, read_text
from permed.kb.model import KnowledgeBase
from permed.matcher.model import GeneCall
from permed.options import Options

CALLS_SCHEMA = "permed.calls/1"


@dataclass
class InputInfo:
    """One input file as reports name it."""

    file: str  # the name reports show (the file name; for the service, the uploaded file's name)
    sha256: str
    samples: tuple[str, ...]
    notices: list[str] = field(default_factory=list)
    position_warnings: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class CallSet:
    """Gene calls for every sample, stored as arrays: `choice[gene][i]` indexes `table` for sample i.

    Samples sharing a genotype pattern share one GeneCall object; a patient is a cohort of one.
    """

    kb: KnowledgeBase
    options: Options
    inputs: list[InputInfo]
    samples: list[str]
    genes: list[str]
    table: list[GeneCall]
    choice: dict[str, np.ndarray]  # gene -> int32 per sample: index into table
    source: dict[str, np.ndarray]  # gene -> int16 per sample: index into inputs (-1: none)
    sample_files: list[list[int]]  # per sample: inputs it appears in
    sample_warnings: dict[int, dict[str, list[str]]]  # sample index -> "chr:pos" -> messages

    def call(self, si: int, gene: str) -> GeneCall:
        return self.table[self.choice[gene][si]]

    def gene_source(self, si: int, gene: str) -> str | None:
        fi = int(self.source[gene][si])
        return self.inputs[fi].file if fi >= 0 else None

    def sample_vcf_warnings(self, si: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for fi in self.sample_files[si]:
            for key, msgs in self.inputs[fi].position_warnings.items():
                lst = out.setdefault(key, [])
                lst.extend(m for m in msgs if m not in lst)
        for key, msgs in self.sample_warnings.get(si, {}).items():
            lst = out.setdefault(key, [])
            lst.extend(m for m in msgs if m not in lst)
        return out

    def sample_calls(self, sample: str | int) -> dict[str, GeneCall]:
        """gene -> call for one sample (by name or index)."""
        si = sample if isinstance(sample, int) else self.sample_index(sample)
        return {g: self.call(si, g) for g in self.genes}

    def sample_index(self, name: str) -> int:
        try:
            return self.samples.index(name)
        except ValueError:
            raise KeyError(f"no sample {name!r}; samples: {', '.join(self.samples[:10])}"
                           f"{' ...' if len(self.samples) > 10 else ''}") from None

    @classmethod
    def empty(cls, kb: KnowledgeBase, sample: str | list[str], options: Options | None = None) -> CallSet:
        """Patients without VCF data (one, or one per row of a caller's outside-call file): every gene
        comes from outside calls (or is not reported)."""
        samples = [sample] if isinstance(sample, str) else list(sample)
        return cls(kb=kb, options=options or Options(), inputs=[], samples=samples, genes=[], table=[],
                   choice={}, source={}, sample_files=[[] for _ in samples], sample_warnings={})

    # ---- saving and loading (permed.calls/1) ---------------------------------------------------
    def to_json(self) -> str:
        doc = CallSetDocument(
            schema=CALLS_SCHEMA, kb_version=self.kb.kb_version, kb_sha256=self.kb.sha256,
            options=self.options.as_dict(),
            inputs=self.inputs,
            samples=self.samples, genes=self.genes, table=self.table,
            choice={g: a.tolist() for g, a in self.choice.items()},
            source={g: a.tolist() for g, a in self.source.items()},
            sample_files=self.sample_files,
            sample_warnings={str(k): v for k, v in self.sample_warnings.items()},
        )
        return doc.dumps()

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str | bytes, kb: KnowledgeBase, where: str = "calls") -> CallSet:
        doc = load_document(CallSetDocument, text, where, CALLS_SCHEMA, kb)
        return cls(
            kb=kb, options=Options.from_dict(doc.options),
            inputs=list(doc.inputs),
            samples=list(doc.samples), genes=list(doc.genes), table=list(doc.table),
            choice={g: np.asarray(v, dtype=np.int32) for g, v in doc.choice.items()},
            source={g: np.asarray(v, dtype=np.int16) for g, v in doc.source.items()},
            sample_files=[list(x) for x in doc.sample_files],
            sample_warnings={int(k): v for k, v in doc.sample_warnings.items()},
        )

    @classmethod
    def load(cls, path: Path, kb: KnowledgeBase) -> CallSet:
        return cls.from_json(read_text(path), kb, str(path))


class CallSetDocument(Document):
    """A saved CallSet: distinct calls plus, per gene, each sample's index into them."""

    options: dict
    inputs: list[InputInfo]
    samples: list[str]
    genes: list[str]
    table: list[GeneCall]
    choice: dict[str, list[int]]
    source: dict[str, list[int]]
    sample_files: list[list[int]]
    sample_warnings: dict[str, dict[str, list[str]]]
