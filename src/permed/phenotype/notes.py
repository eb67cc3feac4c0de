"""Gene notes: conditional messages attached to gene reports (ambiguities, footnotes, warnings).

The catalogue (data/notes.json) records when each note applies; the conditions follow PharmCAT's
message rules so that the same calls carry the same notes. Texts are permed's own.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict

from permed.matcher.model import GeneCall, Message, PositionEvidence
from permed.phenotype.model import Diplotype

NON_MATCH = "non-match"
AMBIGUITY = "ambiguity"


class NoteRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    gene: str | None = None
    haps_called: list[str] = []  # alleles that must be in a recommendation diplotype
    haps_missing: list[str] = []  # alleles that could not be assessed (all defining positions missing)
    variant: str | None = None  # rsid that must have been genotyped (heterozygous, for ambiguity notes)
    variants_missing: list[str] = []  # rsids that must be missing
    dips: list[str] = []  # source diplotype labels
    drugs: list[str] = []
    text: str
    source_note: str | None = None

    def message(self) -> Message:
        return Message(name=self.name, text=self.text)


@lru_cache(maxsize=1)
def note_rules() -> tuple[NoteRule, ...]:
    raw = json.loads((resources.files("permed.phenotype") / "data" / "notes.json").read_text())
    return tuple(NoteRule.model_validate(r) for r in raw["rules"])


def is_footnote(name: str) -> bool:
    return any(r.name == name and r.type == "footnote" for r in note_rules())


def gene_rules(gene: str) -> list[NoteRule]:
    return [r for r in note_rules() if r.gene == gene]


def _find(evidence: list[PositionEvidence], rsid: str) -> PositionEvidence | None:
    # PharmCAT matches rsids by containment ("rs123" in "rs123;rs456")
    return next((e for e in evidence if e.rsid and rsid in e.rsid), None)


def _is_het(e: PositionEvidence) -> bool:
    alleles = [a for a in re.split(r"[|/]", e.call or "") if a]
    return len(set(alleles)) > 1


def rule_applies(rule: NoteRule, call: GeneCall, sources: list[Diplotype], recs: list[Diplotype],
                 uncallable) -> bool:
    """`uncallable()` gives the alleles that could not be assessed (computed only when a rule asks)."""
    called = {a for d in recs for a in d.alleles}
    if any(h not in called for h in rule.haps_called):
        return False
    if rule.haps_missing and any(h not in uncallable() for h in rule.haps_missing):
        return False
    variant = None
    if rule.variant:
        variant = _find(call.evidence, rule.variant)
        if variant is None or variant.status == "missing":
            return False
    for rsid in rule.variants_missing:
        e = _find(call.evidence, rsid)
        if e is None or e.status != "missing":
            return False
    labels = {d.label for d in sources}
    if any(d not in labels for d in rule.dips):
        return False
    if rule.type == AMBIGUITY:
        if rule.dips and call.phased:
            return False  # phased data settle which alleles share a strand
        if variant is not None and not _is_het(variant):
            return False
    return True


def gene_notes(call: GeneCall, sources: list[Diplotype], recs: list[Diplotype], reportable: bool,
               uncallable) -> list[Message]:
    """Notes for a gene report built from a matcher call."""
    if call.status == "no_data":
        return []
    rules = gene_rules(call.gene)
    if not reportable:
        rules = [r for r in rules if r.type == NON_MATCH]
    else:
        rules = [r for r in rules if r.type != NON_MATCH]
    return [r.message() for r in rules if rule_applies(r, call, sources, recs, uncallable)]
