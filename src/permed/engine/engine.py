"""The one engine: VCF -> genotypes -> gene calls -> phenotypes -> advice, for 1..N samples.

`Engine` loads the knowledge base once and builds the stage objects from it (phenotyper, advisor);
the CLI, cohort runs, the service's jobs, the tests and the benchmarks all run through it, so a
patient is a cohort of one and every path makes the same calls. Each stage is also usable alone:
`match` (reading and matching), `interpret` (outside calls enter here), `advise`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from permed.advice.advice_set import AdviceSet
from permed.advice.advisor import Advisor
from permed.advice.medications import MedicationList, drug_index, parse_medications
from permed.engine.assembly import CYP2D6, SHARED_CALLS_LIMIT, Assembly
from permed.engine.executors import LocalStreams, local_executor
from permed.engine.inputs import Inputs, VcfInput
from permed.engine.result import Result
from permed.engine.units import (
    MAX_BLOCK,
    SampleRanges,
    UnitResult,
    file_regions,
    interleaved_slices,
    iter_unit,
    plan_units,
    read_options,
    sample_slices,
)
from permed.errors import ConfigurationError, OutsideCallsError
from permed.genotypes.files import file_sha256
from permed.genotypes.imputed import reader_for
from permed.kb.load import load_kb
from permed.kb.model import KnowledgeBase
from permed.matcher.callset import CallSet
from permed.options import Options
from permed.phenotype.caller_formats import check_format
from permed.phenotype.outside_calls import OutsideCallError, OutsideCallsText
from permed.phenotype.phenotype_set import (
    OutsideCallsRead,
    PhenotypeSet,
    interpret,
    read_all_outside_calls,
    read_outside_sources,
)
from permed.phenotype.phenotyper import Phenotyper

Progress = Callable[..., None]  # progress(total=n) once, then progress(advance=k) as samples are done


class Engine:
    """Holds the knowledge base and what is built from it; build one per process and reuse it."""

    def __init__(self, kb: KnowledgeBase | str | Path | None = None):
        self.kb = kb if isinstance(kb, KnowledgeBase) else load_kb(Path(kb) if kb is not None else None)
        self.phenotyper = Phenotyper(self.kb)
        self.advisor = Advisor(self.kb, self.phenotyper)
        self._drug_index: dict[str, str] | None = None

    # ---- checks a caller can make before any work ----------------------------------------------
    def genes(self, options: Options) -> list[str]:
        """The genes a run calls from VCF data, in report order."""
        genes = sorted(self.kb.genes)
        if options.genes:
            unknown = [g for g in options.genes if g not in self.kb.genes]
            if unknown:
                raise ConfigurationError(f"--genes: unknown gene(s) {', '.join(unknown)}; known: {', '.join(genes)}")
            genes = [g for g in genes if g in options.genes]
        return genes

    def sample_names(self, vcf: VcfInput | Path | str, options: Options | None = None) -> tuple[str, ...]:
        """A VCF's sample names, read with the header checks a run makes (InputFileError if bad)."""
        vcf = vcf if isinstance(vcf, VcfInput) else VcfInput(Path(vcf))
        reader = reader_for(Path(vcf.path), self.kb, sorted(self.kb.genes), read_options(options or Options()),
                            label=vcf.message_label)
        return reader.sample_names()

    def check_outside_calls(self, sources: list[Path | OutsideCallsText],
                            outside_calls_format: str | None = None) -> list[OutsideCallError]:
        """Read outside calls as a run would: a file that cannot be used raises OutsideCallsError;
        lines (or a caller's rows) that cannot be used are returned (a run reports their gene as not called)."""
        _check_exist(sources)
        return read_all_outside_calls(list(sources), self.phenotyper, check_format(outside_calls_format))[1]

    def read_outside_calls(self, inputs: Inputs) -> OutsideCallsRead:
        """The inputs' outside calls, every format, read once (OutsideCallsError for a file that cannot be used)."""
        _check_exist(inputs.outside_calls)
        return read_outside_sources(list(inputs.outside_calls), self.phenotyper, inputs.outside_calls_format)

    def medications(self, medications: str | list[str] | None) -> MedicationList:
        """The patient's medication list, recognised against the knowledge base's drugs."""
        if self._drug_index is None:
            self._drug_index = drug_index(self.kb)
        text = "\n".join(medications) if isinstance(medications, list) else medications
        return parse_medications(text, self._drug_index)

    # ---- the stages ----------------------------------------------------------------------------
    def match(self, inputs: Inputs, options: Options | None = None, *, progress: Progress | None = None,
              executor=None, outside: OutsideCallsRead | None = None) -> CallSet:
        """Read the VCF/BCF inputs and call every gene of every sample (no VCF: a patient per sample the
        outside-call files name, or else one named after the patient; no calls)."""
        options = options or Options()
        if not inputs.vcfs:
            return self._no_vcf_calls(inputs, options, outside)
        plan = self._plan(inputs, options)
        return self._match_all(plan, [v.sha256 for v in inputs.vcfs], options, progress, executor)

    def _match_all(self, plan: _Plan, sha: list[str | None], options: Options, progress, executor) -> CallSet:
        """Every unit of the plan, assembled into one call set."""
        units = plan_units(plan.paths, plan.labels, self.kb, plan.vcf_genes, options, plan.file_samples,
                           regions=plan.regions)
        if progress:
            progress(total=sum(u.n_samples for u in units))
        assembly = Assembly(self.kb, options, plan.genes, plan.names, plan.file_samples)
        for r in (executor or local_executor)(units, self.kb, options, progress):
            assembly.add(r)
        return assembly.finish(plan.paths, sha)

    def stream(self, inputs: Inputs, options: Options | None = None, *, progress: Progress | None = None,
               executor=None) -> Iterator[Result]:
        """`run` for a cohort, a block of samples at a time: each block's Result (calls and phenotypes of its
        samples, at most MAX_BLOCK) as soon as its chunks are called, so that rows can be written while later
        blocks are read and the caller never holds the whole cohort. Blocks are consecutive samples in file
        order; files with different sample lists make a single block."""
        options = options or Options()
        if not options.chunk_size:
            options = options.replace(chunk_size=MAX_BLOCK)  # blocks are made of chunks: bound them
        if not inputs.vcfs and not inputs.outside_calls:
            raise ConfigurationError("no input files: give VCF/BCF paths, --outside-calls or --example")
        outside = self.read_outside_calls(inputs)
        if not inputs.vcfs:
            yield self._result(self._no_vcf_calls(inputs, options, outside), outside, options)
            return
        plan = self._plan(inputs, options)
        n = len(plan.file_samples[0])
        # calls met in earlier blocks and their interpretations, reused (this run's only; bounded)
        shared: dict = {}
        reports: dict = {}
        # every file's checksum once (a block's InputInfo would otherwise hash its file again)
        sha = [v.sha256 or file_sha256(p) for v, p in zip(inputs.vcfs, plan.paths)]
        # every sample of the run, for callers' rows naming samples of other blocks (only with callers' files)
        known = set(plan.file_samples[0]).union(*plan.file_samples[1:]) if outside.sample_files else None
        if any(fs != plan.file_samples[0] for fs in plan.file_samples[1:]):
            # samples spread over files differently: assembled as one block
            yield self._result(self._match_all(plan, sha, options, progress, executor), outside, options, known)
            return
        with ExitStack() as stack:
            # an executor that can stream (a Dask cluster) sends chunks as its workers make them, like local ones
            session = stack.enter_context(executor.session()) if hasattr(executor, "session") else None
            if session is not None and not options.split_samples:
                options = options.replace(workers=max(options.workers, session.slots))
            streaming = executor is None or session is not None
            local = executor is None and options.workers == 1 and not options.split_samples
            whole: SampleRanges = ((0, n),)
            # one worker reads each file once (its chunks are assembled as they come); workers read sample slices
            slices = [whole] if local else [sl or whole for sl in sample_slices(
                n, options, sum(len(r) for r in plan.regions))]
            # workers splitting a file by samples take alternate chunks, which they finish in sample order
            interleave = streaming and not options.split_samples and len(slices) > 1
            if interleave:
                slices = interleaved_slices(n, len(slices), options.chunk_size)
            units = plan_units(plan.paths, plan.labels, self.kb, plan.vcf_genes, options, plan.file_samples,
                               slices=slices, regions=plan.regions)
            if progress:
                progress(total=sum(u.n_samples for u in units))
            tick = (lambda k: progress(advance=k)) if progress else None
            of_slice = [[i for i, u in enumerate(units) if (u.samples or whole) == sl] for sl in slices]
            if local:
                per_slice = [[iter_unit(u, self.kb, options) for u in units]]
            elif streaming and len(units) > 1:
                # workers send chunks as they make them: early blocks are written while later ones are read
                streams = stack.enter_context(session.streams(units, self.kb, options) if session is not None
                                              else LocalStreams(units, self.kb, options))
                if interleave:
                    # the units of one record region, one per worker, merged back into sample order
                    per_slice = [[_in_sample_order([streams.stream(idx[r]) for idx in of_slice], slices)
                                  for r in range(len(of_slice[0]))]]
                else:
                    per_slice = ([streams.stream(i) for i in idx] for idx in of_slice)
            else:
                results = (executor or local_executor)(units, self.kb, options, progress)
                per_slice = (_chunks_of([next(results) for _ in idx]) for idx in of_slice)
                tick = None  # the executor reports progress per unit
            for streams_of_slice in per_slice:
                for calls in self._blocks(streams_of_slice, shared, plan, options, sha, tick):
                    yield self._result(calls, outside, options, known, reports)

    def _blocks(self, streams, shared: dict, plan: _Plan, options: Options, sha: list[str], tick=None
                ) -> Iterator[CallSet]:
        """Call sets of consecutive blocks of up to MAX_BLOCK samples from the units of one sample slice, each
        unit a stream of one-chunk UnitResults (all units of a slice give chunks at the same offsets)."""
        pending: list[list[UnitResult]] = [[] for _ in streams]
        start: int | None = None
        size = 0
        while True:
            step = [next(r, None) for r in streams]
            if any(x is None for x in step) and not all(x is None for x in step):
                raise RuntimeError("units of one sample slice gave different chunks")  # one plan: cannot happen
            if step[0] is not None:
                if start is None:
                    start = step[0].chunks[0].offset
                for lst, x in zip(pending, step):
                    lst.append(x)
                size += step[0].chunks[0].n
                if tick:
                    tick(step[0].chunks[0].n * len(streams))
            if size and (step[0] is None or size + (options.chunk_size or size) > MAX_BLOCK):
                fs = [s[start:start + size] for s in plan.file_samples]
                assembly = Assembly(self.kb, options, plan.genes, plan.names, fs, start=start, shared=shared)
                for lst in pending:
                    fi = lst[-1].file_index
                    assembly.add(UnitResult(fi, fs[fi], [c for x in lst for c in x.chunks],
                                            lst[-1].position_warnings, lst[-1].notices))
                yield assembly.finish(plan.paths, sha)
                pending = [[] for _ in streams]
                start, size = start + size, 0
            if step[0] is None:
                return

    def _result(self, calls: CallSet, outside: OutsideCallsRead, options: Options,
                known: set[str] | None = None, reports: dict | None = None) -> Result:
        if reports is not None and len(reports) > SHARED_CALLS_LIMIT:
            reports.clear()
        phenotypes = interpret(calls, None, self.phenotyper, read=outside, known_samples=known, report_cache=reports)
        return Result(kb=self.kb, options=options, calls=calls, phenotypes=phenotypes, advice=None)

    def _no_vcf_calls(self, inputs: Inputs, options: Options, outside: OutsideCallsRead | None) -> CallSet:
        named = (outside or self.read_outside_calls(inputs)).samples if inputs.outside_calls else []
        return CallSet.empty(self.kb, named or [inputs.default_patient()], options)

    def _plan(self, inputs: Inputs, options: Options) -> _Plan:
        _check_distinct(inputs.vcfs)
        genes = self.genes(options)
        vcf_genes = [g for g in genes if g != CYP2D6 or options.cyp2d6_from_vcf]
        paths = [Path(v.path) for v in inputs.vcfs]
        labels = [v.message_label for v in inputs.vcfs]
        file_samples = [self.sample_names(v, options) for v in inputs.vcfs]
        regions = [file_regions(p, label, self.kb, vcf_genes, options) for p, label in zip(paths, labels)]
        return _Plan(genes, vcf_genes, paths, labels, [v.report_name for v in inputs.vcfs], file_samples, regions)

    def interpret(self, calls: CallSet, outside_calls: list[Path | OutsideCallsText] | OutsideCallsRead = (),
                  outside_calls_format: str | None = None) -> PhenotypeSet:
        """Phenotypes, activity scores and lookup keys; outside calls replace their gene's VCF call (a
        caller's file, for the samples it names)."""
        if isinstance(outside_calls, OutsideCallsRead):
            return interpret(calls, None, self.phenotyper, read=outside_calls)
        return interpret(calls, list(outside_calls), self.phenotyper, check_format(outside_calls_format))

    def advise(self, phenotypes: PhenotypeSet, medications: str | list[str] | MedicationList | None = None
               ) -> AdviceSet:
        """Drug advice for every sample (computed per sample on demand)."""
        meds = medications if isinstance(medications, MedicationList) else self.medications(medications)
        return AdviceSet(self.advisor, phenotypes, meds)

    def run(self, inputs: Inputs, options: Options | None = None, *, progress: Progress | None = None,
            executor=None) -> Result:
        """Read -> match -> interpret -> advise for every sample of the inputs."""
        options = options or Options()
        if not inputs.vcfs and not inputs.outside_calls:
            raise ConfigurationError("no input files: give VCF/BCF paths, --outside-calls or --example")
        outside = self.read_outside_calls(inputs)  # before reading VCFs, which can take long
        meds = self.medications(inputs.medications) if options.advice else None
        calls = self.match(inputs, options, progress=progress, executor=executor, outside=outside)
        phenotypes = self.interpret(calls, outside)
        advice = self.advise(phenotypes, meds) if options.advice else None
        return Result(kb=self.kb, options=options, calls=calls, phenotypes=phenotypes, advice=advice)


@dataclass
class _Plan:
    genes: list[str]  # reported genes
    vcf_genes: list[str]  # genes called from the VCF data
    paths: list[Path]
    labels: list[str]  # how messages name each file
    names: list[str]  # how reports name each file
    file_samples: list[tuple[str, ...]]
    regions: list[list[list[str] | None]]  # per file: its record units (file_regions)


def _in_sample_order(streams: list[Iterator[UnitResult]], slices: list[SampleRanges]) -> Iterator[UnitResult]:
    """One-chunk results of units reading interleaved sample ranges (`slices`, one per stream), in the file's
    sample order; each carries the position warnings met so far by all of them."""
    warnings: dict[str, list[str]] = {}
    for start, w in sorted((a, w) for w, ranges in enumerate(slices) for a, _ in ranges):
        r = next(streams[w])
        if r.chunks[0].offset != start:
            raise RuntimeError("a unit's chunks do not follow its sample ranges")  # one plan: cannot happen
        for key, msgs in r.position_warnings.items():
            seen = warnings.setdefault(key, [])
            seen.extend(m for m in msgs if m not in seen)
        yield UnitResult(r.file_index, r.samples, r.chunks, {k: list(v) for k, v in warnings.items()}, r.notices)
    for s in streams:
        if next(s, None) is not None:
            raise RuntimeError("a unit gave more chunks than its sample ranges")


def _chunks_of(results: list[UnitResult]) -> list[Iterator[UnitResult]]:
    """Each unit's finished result as a stream of one-chunk results (its warnings and notices on each)."""
    return [iter([UnitResult(r.file_index, (), [c], r.position_warnings, r.notices) for c in r.chunks])
            for r in results]


def _check_exist(sources: list[Path | OutsideCallsText]) -> None:
    for p in sources:
        if not isinstance(p, OutsideCallsText) and not Path(p).is_file():
            raise OutsideCallsError(f"{p}: outside-calls file not found")


def _check_distinct(vcfs: list[VcfInput]) -> None:
    seen = set()
    for v in vcfs:
        key = os.path.realpath(v.path)
        if key in seen:
            raise ConfigurationError(f"{v.message_label}: given more than once")
        seen.add(key)
