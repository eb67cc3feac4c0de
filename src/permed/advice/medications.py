"""The patient's medication list: recognise drugs (name, RxNorm or ATC) and CYP inhibitors.

A strong or moderate CYP2D6 or CYP2C19 inhibitor changes the phenotype that advice is based on
(phenoconversion); the rules and the inhibitor list are cited data (data/inhibitors.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from permed.advice.model import Phenoconversion
from permed.errors import ConfigurationError
from permed.phenotype.annotate import GeneAnnotator, _format_activity
from permed.phenotype.model import NA, NO_RESULT, Diplotype, GeneReport


@lru_cache(maxsize=1)
def inhibitor_data() -> dict:
    return json.loads((resources.files("permed.advice") / "data" / "inhibitors.json").read_text())


@dataclass
class Medication:
    given: str
    drug: str | None = None  # KB drug name when recognised
    inhibits: dict[str, str] = field(default_factory=dict)  # gene -> strong | moderate


@dataclass
class MedicationList:
    items: list[Medication]

    @property
    def drugs(self) -> set[str]:
        return {m.drug for m in self.items if m.drug}

    @property
    def unrecognised(self) -> list[str]:
        return [m.given for m in self.items if not m.drug and not m.inhibits]

    def inhibitors(self, gene: str) -> list[tuple[Medication, str]]:
        """Inhibitors of `gene` on the list, strongest first."""
        found = [(m, m.inhibits[gene]) for m in self.items if gene in m.inhibits]
        return sorted(found, key=lambda x: x[1] != "strong")

    def as_dict(self) -> dict:
        return {
            "given": [m.given for m in self.items],
            "recognised": {m.given: m.drug for m in self.items if m.drug},
            "inhibitors": {m.given: m.inhibits for m in self.items if m.inhibits},
            "unrecognised": self.unrecognised,
        }


def parse_medications(text: str | None, drug_index: dict[str, str]) -> MedicationList:
    """`drug_index` maps lower-case names, RxNorm CUIs and ATC codes to KB drug names."""
    if not text:
        return MedicationList([])
    items = []
    data = inhibitor_data()["inhibitors"]
    for raw in re.split(r"[,;\n]", text):
        token = raw.strip()
        if not token:
            continue
        if len(token) > 100:
            raise ConfigurationError(f"--medications: entry {token[:40]!r}... is too long to be a drug name or code")
        key = token.lower()
        drug = drug_index.get(key) or drug_index.get(token.upper())
        name = drug or key
        inhibits = {gene: strength for gene, by in data.items() for strength, names in by.items() if name in names}
        items.append(Medication(given=token, drug=drug, inhibits=inhibits))
    return MedicationList(items)


def drug_index(kb) -> dict[str, str]:
    out: dict[str, str] = {}
    for g in kb.guidelines:
        for d in g.drugs:
            out[d.name] = d.name
            if d.rxnorm:
                out[d.rxnorm] = d.name
            for code in d.atc:
                out.setdefault(code.upper(), d.name)
    return out


def _score_value(key: str) -> float | None:
    try:
        return float(key.lstrip("≥>"))
    except ValueError:
        return None


def phenoconvert(report: GeneReport, meds: MedicationList, ann: GeneAnnotator
                 ) -> tuple[GeneReport, Phenoconversion | None]:
    """The report advice should use when the patient takes an inhibitor of this gene."""
    inhibitors = meds.inhibitors(report.gene)
    if not inhibitors or not report.reportable:
        return report, None
    med, strength = inhibitors[0]
    rules = inhibitor_data()["rules"][report.gene]
    new_recs: list[Diplotype] = []
    for d in report.recommendation_diplotypes:
        if report.gene == "CYP2D6":
            factor = rules[strength]
            keys = []
            for k in d.lookup_keys:
                v = _score_value(k)
                # "≥3.0" scales to its lower bound (≥3.0 x 0.5 -> 1.5): the conservative reading
                keys.append(k if v is None else _format_activity(v * factor))
            keys = list(dict.fromkeys(keys))
            phenos = sorted({p for k in keys for p in ann._phenotypes_by_score.get(k, [NA])})
            score = keys[0] if len(keys) == 1 else d.activity_score
            new_recs.append(d.model_copy(update={"lookup_keys": keys, "phenotypes": phenos, "activity_score": score}))
        else:
            mapping = rules[strength]
            phenos = [mapping.get("*", mapping.get(p, p)) if p not in (NA, NO_RESULT) else p for p in d.phenotypes]
            new_recs.append(d.model_copy(update={"lookup_keys": list(phenos), "phenotypes": phenos}))
    before_keys = [k for d in report.recommendation_diplotypes for k in d.lookup_keys]
    after_keys = [k for d in new_recs for k in d.lookup_keys]
    if before_keys == after_keys:
        return report, None
    conv = Phenoconversion(
        gene=report.gene, inhibitor=med.given, strength=strength, from_keys=before_keys, to_keys=after_keys,
        from_phenotypes=[p for d in report.recommendation_diplotypes for p in d.phenotypes],
        to_phenotypes=[p for d in new_recs for p in d.phenotypes],
    )
    return report.model_copy(update={"recommendation_diplotypes": new_recs}), conv

