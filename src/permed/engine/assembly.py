"""Put unit results together into one CallSet: for every sample and gene, the call from the best
source, vectorised over samples; the same call from different units is stored once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from permed.engine.units import UnitResult
from permed.errors import InputFileError
from permed.genotypes.files import file_sha256
from permed.kb.model import KnowledgeBase
from permed.matcher.callset import CallSet, InputInfo
from permed.matcher.model import GeneCall, Message
from permed.options import Options

CYP2D6 = "CYP2D6"
SHARED_CALLS_LIMIT = 100_000  # distinct calls a streamed run keeps across blocks
CYP2D6_VCF_WARNING = Message(
    name="cyp2d6-from-vcf",
    text="CYP2D6 was called from SNVs and small indels only. Gene deletions (*5), duplications and hybrid "
    "alleles are invisible in a VCF, so a *1/*1 call may hide *1/*5 or a duplication; confirm with a "
    "copy-number-aware caller before acting on it.",
)
CYP2D6_NOT_CALLED = Message(
    name="cyp2d6-not-called",
    text="CYP2D6 is not called from VCF by default because its deletions and duplications are invisible "
    "in a VCF. Provide an outside call (e.g. from a copy-number-aware caller) or use --cyp2d6-from-vcf.",
)


class Assembly:
    """Choose, for every sample and gene, the call from the best source; vectorised over samples."""

    def __init__(self, kb: KnowledgeBase, options: Options, genes: list[str], names: list[str],
                 file_samples: list[tuple[str, ...]], start: int = 0, shared: dict[str, GeneCall] | None = None):
        self.kb, self.options, self.genes = kb, options, genes
        self.start = start  # a block of a streamed run: file_samples are each file's samples from here
        # a streamed run's calls by content across its blocks: a call met before is the same object (its
        # interpretation and rows are then reused)
        self.shared = shared if shared is not None else {}
        self.names = names  # how reports name each input file
        self.samples: list[str] = []
        index: dict[str, int] = {}
        self.sample_files: list[list[int]] = []
        self.file_index: list[np.ndarray] = []  # file -> global index of each of its samples
        if file_samples and all(fs == file_samples[0] for fs in file_samples[1:]):
            # every file holds the same samples in the same order (a cohort's blocks): no per-sample lookups
            # (sample names are unique within a file: the readers check)
            self.samples = list(file_samples[0])
            every = list(range(len(file_samples)))
            self.sample_files = [every] * len(self.samples)  # read only
            self.file_index = [np.arange(len(self.samples), dtype=np.int64)] * len(file_samples)
            file_samples = []
        for fi, file_names in enumerate(file_samples):
            idx = []
            for s in file_names:
                if s not in index:
                    index[s] = len(self.samples)
                    self.samples.append(s)
                    self.sample_files.append([])
                self.sample_files[index[s]].append(fi)
                idx.append(index[s])
            self.file_index.append(np.array(idx, dtype=np.int64))
        n = len(self.samples)
        self.table: list[GeneCall] = []
        self._by_content: dict[str, int] = {}
        self._by_id: dict[int, int] = {}  # valid while one unit's result (which holds the objects) is added
        self.choice = {g: np.full(n, -1, dtype=np.int32) for g in genes}
        self.rank = {g: np.full(n, -1, dtype=np.int8) for g in genes}
        self.source = {g: np.full(n, -1, dtype=np.int16) for g in genes}
        self.sample_warnings: dict[int, dict[str, list[str]]] = {}
        self.notices: dict[int, list[str]] = {}
        self.position_warnings: dict[int, dict[str, list[str]]] = {}

    def _intern(self, calls: list[GeneCall | str]) -> np.ndarray:
        """Table index of each call; equal calls from different chunks, units or workers share one
        entry (thousands of distinct genotype patterns come down to far fewer distinct calls). Calls from
        another process arrive as their JSON text (`UnitResult.portable`): only new ones are re-created."""
        out = np.empty(len(calls), dtype=np.int32)
        for i, c in enumerate(calls):
            if isinstance(c, str):
                k = self._by_content.get(c)
                if k is None:
                    k = self._by_content[c] = len(self.table)
                    self.table.append(self._shared(c, None))
                out[i] = k
                continue
            k = self._by_id.get(id(c))
            if k is None:
                key = c.model_dump_json()
                k = self._by_content.get(key)
                if k is None:
                    k = self._by_content[key] = len(self.table)
                    self.table.append(self._shared(key, c))
                self._by_id[id(c)] = k
            out[i] = k
        return out

    def _shared(self, key: str, call: GeneCall | None) -> GeneCall:
        known = self.shared.get(key)
        if known is None:
            if len(self.shared) >= SHARED_CALLS_LIMIT:
                self.shared.clear()
            known = self.shared[key] = call if call is not None else GeneCall.model_validate_json(key)
        return known

    def add(self, r: UnitResult) -> None:
        fi = r.file_index
        notices = self.notices.setdefault(fi, [])
        notices.extend(x for x in r.notices if x not in notices)
        pw = self.position_warnings.setdefault(fi, {})
        for key, msgs in r.position_warnings.items():
            lst = pw.setdefault(key, [])
            lst.extend(m for m in msgs if m not in lst)
        for ch in r.chunks:
            gidx = self.file_index[fi][ch.offset - self.start:ch.offset - self.start + ch.n]
            if ch.sample_warnings:
                where = gidx.tolist()
                for (si, key), msgs in ch.sample_warnings.items():
                    per_key = self.sample_warnings.setdefault(where[si], {})
                    lst = per_key.get(key)
                    if lst is None:
                        per_key[key] = list(msgs)  # the usual case: a sample's warnings come from one chunk
                    else:
                        lst.extend(m for m in msgs if m not in lst)
            for gene, (calls, inverse, rank) in ch.genes.items():
                best = self.rank[gene][gidx]
                clash = (rank == 3) & (best == 3)
                if clash.any():
                    first = int(gidx[np.flatnonzero(clash)[0]])
                    other = self.names[int(self.source[gene][first])]
                    raise InputFileError(f"sample {self.samples[first]}: {gene} positions are present in both "
                                         f"{other} and {self.names[fi]}; give each sample's data for a gene "
                                         "in one file")
                better = rank > best
                if better.any():
                    target = gidx[better]
                    self.choice[gene][target] = self._intern(calls)[inverse[better]]
                    self.rank[gene][target] = rank[better]
                    self.source[gene][target] = fi
        self._by_id.clear()

    def finish(self, paths: list[Path], sha256: list[str | None]) -> CallSet:
        inputs = [InputInfo(file=name, sha256=sha or file_sha256(p), samples=tuple(self.samples[i] for i in idx),
                            notices=self.notices.get(fi, []), position_warnings=self.position_warnings.get(fi, {}))
                  for fi, (p, name, sha, idx) in enumerate(zip(paths, self.names, sha256, self.file_index))]
        for g in self.genes:
            missing = self.choice[g] < 0
            if g == CYP2D6 and not self.options.cyp2d6_from_vcf:
                missing[:] = True
                default = GeneCall(gene=CYP2D6, status="not_called", source_diplotypes=["Unknown/Unknown"],
                                   warnings=[CYP2D6_NOT_CALLED])
            else:
                default = GeneCall(gene=g, status="no_data", source_diplotypes=["Unknown/Unknown"],
                                   missing_positions=[loc.position for loc in self.kb.genes[g].loci])
            if missing.any():
                self.table.append(default)
                self.choice[g][missing] = len(self.table) - 1
                self.source[g][missing] = -1
            if g == CYP2D6 and self.options.cyp2d6_from_vcf:
                # every CYP2D6 call made from a VCF says what it cannot see
                flagged: dict[int, int] = {}
                for k in np.unique(self.choice[g]):
                    c = self.table[k]
                    self.table.append(c.model_copy(update={"warnings": [*c.warnings, CYP2D6_VCF_WARNING]}))
                    flagged[int(k)] = len(self.table) - 1
                self.choice[g] = np.vectorize(flagged.get, otypes=[np.int32])(self.choice[g])
        return CallSet(kb=self.kb, options=self.options, inputs=inputs, samples=self.samples, genes=self.genes,
                       table=self.table, choice=self.choice, source=self.source, sample_files=self.sample_files,
                       sample_warnings=self.sample_warnings)
