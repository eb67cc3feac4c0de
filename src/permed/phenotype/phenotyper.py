"""Gene calls -> gene reports: source diplotypes, recommendation diplotypes, display calls.

A report is computed once per distinct gene call; samples that share a call share its report.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cmp_to_key

from permed.kb.model import KnowledgeBase
from permed.kb.policy import LOWEST_FUNCTION_GENES
from permed.matcher.model import GeneCall, Message
from permed.matcher.names import name_cmp
from permed.phenotype.annotate import GeneAnnotator, sort_diplotypes
from permed.phenotype.lowest_function import infer_from_strands, infer_unphased
from permed.phenotype.model import NO_DATA, NOT_CALLED, Diplotype, GeneReport
from permed.phenotype.notes import gene_notes
from permed.phenotype.outside_calls import cyp2d6_copy_number

_name_key = cmp_to_key(name_cmp)

MSG_COMBO = Message(
    name="pcat-combo-naming",
    text="At least one allele is a combination of named alleles or carries variants outside any named allele "
    "(shown in brackets or as HGVS); such alleles have no assigned function, so no phenotype is derived.",
)
MSG_COMBO_UNPHASED = Message(
    name="pcat-combo-unphased",
    text="The genotype is unphased, so which variants share a strand is unknown; other combinations of the same "
    "variants are equally possible.",
)
MSG_CYP2D6_RESEARCH = Message(
    name="pcat-cyp2d6-research-mode",
    text="CYP2D6 was called from the VCF (research use): copy-number changes and hybrids are not detected.",
)


SLCO1B1 = "SLCO1B1"
RS4149056 = "rs4149056"
MSG_SLCO1B1_FALLBACK = Message(
    name="slco1b1-rs4149056-only",
    text="No SLCO1B1 star-allele diplotype could be called; the phenotype used for advice comes from the rs4149056 "
    "genotype alone (T: *1, C: *5), as CPIC's statin guideline allows. Other SLCO1B1 variants are not considered.",
)


def _reference_note(gene: str, has_missing: bool) -> Message:
    text = (f"The {gene} reference allele is named because none of the variants that define other {gene} "
            "alleles was found")
    if has_missing:
        text += " (at positions that were read or that are missing from the input)"
    return Message(name="reference-allele", text=text + ".")


class Phenotyper:
    """Builds gene reports from gene calls, memoised per call object."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self._annotators: dict[str, GeneAnnotator] = {}

    def annotator(self, gene: str) -> GeneAnnotator:
        ann = self._annotators.get(gene)
        if ann is None:
            ann = self._annotators[gene] = GeneAnnotator(self.kb, gene)
        return ann

    def report(self, call: GeneCall) -> GeneReport:
        gene = call.gene
        ann = self.annotator(gene)
        homozygous: list[str] = []
        sources: list[Diplotype] = []
        recs: list[Diplotype]
        if call.diplotypes:
            seen = set()
            for d in call.diplotypes:
                names = sorted((h.name for h in d.haplotypes), key=_name_key)
                combo = any(h.combination or h.partial or h.name.startswith("[") for h in d.haplotypes)
                dip = ann.diplotype(names, combination=combo)
                if dip.label not in seen:
                    seen.add(dip.label)
                    sources.append(dip)
            sources = sort_diplotypes(sources)
            if gene in LOWEST_FUNCTION_GENES:
                candidates = [tuple([h.name] for h in d.haplotypes) for d in call.diplotypes]
                recs = [infer_from_strands(ann, candidates, [s.label for s in sources])]
            else:
                recs = sources
        elif call.haplotype_matches and gene in LOWEST_FUNCTION_GENES:
            counts = Counter(call.haplotype_matches)
            homozygous = sorted((n for n, c in counts.items() if c > 1), key=_name_key)
            sources = [ann.diplotype([n]) for n in sorted(counts, key=_name_key)]
            recs = [infer_unphased(ann, list(call.haplotype_matches), [s.label for s in sources])]
        else:
            sources = [ann.unknown()]
            recs = sources
            if gene == SLCO1B1:
                recs = slco1b1_fallback(ann, call) or recs

        called = bool(sources) and not any(d.unknown for d in sources)
        reportable = bool(recs) and not any(d.unknown for d in recs)
        no_data = call.status == "no_data"
        if no_data:
            prints = [NO_DATA]
        elif not reportable:
            prints = [NOT_CALLED]
        else:
            prints = display_calls(recs)
        return GeneReport(
            gene=gene, call_source="matcher", source_diplotypes=sources, recommendation_diplotypes=recs,
            print_calls=prints, called=called, reportable=reportable, no_data=no_data,
            missing_positions=list(call.missing_positions), homozygous_components=homozygous,
            messages=self._messages(call, ann, sources, recs, reportable),
        )

    def _uncallable(self, call: GeneCall) -> set[str]:
        """Alleles that could not be assessed: every position that defines them is missing."""
        if not call.missing_positions:
            return set()
        gdef = self.kb.genes[call.gene]
        missing = {gdef.position_index[p] for p in call.missing_positions if p in gdef.position_index}
        return {a.name for a in gdef.alleles if not a.reference and a.defined and set(a.defined) <= missing}

    def _messages(self, call: GeneCall, ann: GeneAnnotator, sources: list[Diplotype], recs: list[Diplotype],
                  reportable: bool) -> list[Message]:
        out = list(call.warnings)
        gene = call.gene
        if gene != "DPYD" and any(d.combination for d in sources):
            out.append(MSG_COMBO)
            if not call.phased:
                out.append(MSG_COMBO_UNPHASED)
        if gene == "CYP2D6" and call.status == "called":
            out.append(MSG_CYP2D6_RESEARCH)
        if gene != "CFTR" and ann.n_positions > 1 and ann.reference:
            if any(ann.reference in d.alleles[:2] for d in sources):
                out.append(_reference_note(gene, bool(call.missing_positions)))
        if any(d.inferred_from and d.inferred_from[0].startswith(RS4149056) for d in recs):
            out.append(MSG_SLCO1B1_FALLBACK)
        out.extend(gene_notes(call, sources, recs, reportable, lambda: self._uncallable(call)))
        return out


def slco1b1_fallback(ann: GeneAnnotator, call: GeneCall) -> list[Diplotype] | None:
    """SLCO1B1 not callable from star alleles: CPIC's statin advice can use the rs4149056 genotype alone."""
    e = next((x for x in call.evidence if x.rsid == RS4149056), None)
    if e is None or e.status == "missing" or not e.call:
        return None
    bases = sorted((b for b in re.split(r"[|/]", e.call) if b), reverse=True)  # T before C
    names = {"T": "*1", "C": "*5"}
    if len(bases) != 2 or any(b not in names for b in bases):
        return None
    source = f"{RS4149056} {bases[1]}/{RS4149056} {bases[0]}"
    return [ann.diplotype([names[b] for b in bases], inferred_from=[source])]


def display_calls(recs: list[Diplotype]) -> list[str]:
    """What PharmCAT prints as the gene's call: inferred diplotypes show what they were inferred from."""
    out: list[str] = []
    for d in sort_diplotypes(recs):
        out.extend(d.inferred_from or [d.label])
    return out


MSG_OUTSIDE = Message(
    name="pcat-outside-call",
    text="This call was made outside permed and given as an outside call; the variant-level evidence behind it is "
    "not available here.",
)


def _prefer_sample_data(gene: str, matcher: GeneReport) -> Message:
    return Message(
        name="prefer-sample-data",
        text=f"The VCF gave {gene} {'; '.join(matcher.print_calls)}; the outside call was used instead. Remove "
        f"{gene} from the outside calls to use the VCF-based call.",
    )


def outside_report(ph: Phenotyper, gene: str, calls: list, errors: list, matcher: GeneReport | None) -> GeneReport:
    """A gene report from one or more outside calls (or from lines that could not be used)."""
    ann = ph.annotator(gene)
    messages: list[Message] = [MSG_OUTSIDE]
    if matcher is not None and matcher.called:
        messages.append(_prefer_sample_data(gene, matcher))
    if errors:
        for e in errors:
            messages.append(Message(name="outside-call-error", text=f"{e.where}: {e.reason}"))
        unknown = ann.unknown()
        return GeneReport(gene=gene, call_source="outside", source_diplotypes=[unknown],
                          recommendation_diplotypes=[unknown], print_calls=[NOT_CALLED], called=False,
                          reportable=False, messages=messages)
    if len(calls) > 1:
        messages.append(Message(name="multiple-outside-calls",
                                text=f"{len(calls)} outside calls were given for {gene}; each is reported."))
    sources: list[Diplotype] = []
    recs: list[Diplotype] = []
    for oc in calls:
        messages.extend(Message(name="outside-call-note", text=f"{oc.where}: {w}") for w in oc.warnings)
        if oc.no_call:
            d = ann.unknown()
            sources.append(d)
            recs.append(d)
            continue
        src = ann.diplotype(oc.alleles, phenotype=oc.phenotype, activity_score=oc.activity_score)
        sources.append(src)
        messages.extend(_consistency(ann, oc, src))
        if not oc.alleles:
            recs.append(src)
        elif gene in LOWEST_FUNCTION_GENES:
            strands = tuple([a] for a in sorted(oc.alleles, key=_name_key))
            recs.append(infer_from_strands(ann, [strands], [src.label]))
        elif gene == "CYP2D6":
            cn = [cyp2d6_copy_number(a, ann) for a in oc.alleles]
            if cn != oc.alleles:
                recs.append(ann.diplotype(cn, phenotype=oc.phenotype, activity_score=oc.activity_score,
                                          inferred_from=[src.label]))
            else:
                recs.append(src)
        else:
            recs.append(src)
    reportable = bool(recs) and not any(d.unknown for d in recs)
    return GeneReport(
        gene=gene, call_source="outside", source_diplotypes=sort_diplotypes(sources),
        recommendation_diplotypes=sort_diplotypes(recs),
        print_calls=display_calls(recs) if reportable else [NOT_CALLED],
        called=bool(sources) and not any(d.unknown for d in sources), reportable=reportable, messages=messages,
    )


def _consistency(ann: GeneAnnotator, oc, d: Diplotype) -> list[Message]:
    """Outside values are kept as given; say so when they disagree with the knowledge base."""
    if not ann.activity_gene or oc.activity_score is None:
        return []
    score = d.activity_score
    if oc.phenotype:
        expected = sorted({r.lookup_key for r in ann.table.rows if r.phenotype == oc.phenotype})
        if expected and score not in expected:
            return [Message(name="outside-score-mismatch",
                            text=f"Activity score {score} does not match phenotype {oc.phenotype} "
                            f"(expected {', '.join(expected)}); the activity score is used for advice.")]
    if oc.alleles:
        tabled = ann.diplotype(oc.alleles).activity_score
        if tabled not in (None, "n/a") and tabled != score:
            return [Message(name="outside-score-mismatch",
                            text=f"Activity score {score} differs from {tabled}, the score of {d.label}; "
                            "the given activity score is used for advice.")]
    return []
