"""Convert PharmCAT's guideline bundle (CPIC and DPWG annotations from ClinPGx) into structured facts.

Only facts are kept: which genotype (lookup keys) a recommendation applies to, its strength, the kind of
action (standard dose, dose change with its factor, avoid, alternative, monitor, no recommendation), the
alternative drugs it names, flags, drug codes and citations. The recommendation text itself is read to
derive those facts and is never stored; permed writes its own one-line summary from the facts.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

from permed.errors import InputFileError
from permed.kb.model import DrugInfo, Guideline, GuidelineRecommendation
from permed.kb.wording import summary

ACTIONS = ("avoid", "alternative", "dose_decrease", "dose_increase", "monitor", "standard", "no_recommendation",
           "see_guideline")
_TAG = re.compile(r"<[^>]+>")
# sentence ends: a full stop followed by space/newline, but not inside decimals such as "1.5"
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_NUM = r"(\d+(?:\.\d+)?)"
_RANGE = _NUM + r"\s*%?\s*(?:-|–|to)\s*" + _NUM


def plain_text(raw_html: str | None) -> str:
    text = _TAG.sub(" ", raw_html or "")
    return re.sub(r"[ \t]+", " ", html.unescape(text)).strip()


def main_text(text: str) -> str:
    """The recommendation proper, without the 'Other Considerations' notes CPIC appends."""
    return re.split(r"Other Considerations", text, maxsplit=1)[0]


def dose_factor(text: str) -> tuple[float, float] | None:
    """Fraction of the standard dose a recommendation asks for, as (low, high); None if not stated."""
    t = text.lower().replace("–", "-")
    pct = lambda x: float(x) / 100  # noqa: E731
    m = re.search(r"(?:start|use|initiate|reduce)[^.]*?\(?" + _RANGE + r"\s*% of (?:the )?(?:normal|standard|"
                  r"lowest recommended|recommended)", t)
    if m:
        return pct(m.group(1)), pct(m.group(2))
    m = re.search(_NUM + r"\s*% of (?:the )?(?:normal|standard|usual|recommended|lowest recommended)", t)
    if m:
        return pct(m.group(1)), pct(m.group(1))
    m = re.search(r"(?:reduc\w*|decreas\w*|lower\w*)[^.]*?by (?:approximately )?" + _NUM + r"\s*%", t) or \
        re.search(_NUM + r"\s*% (?:reduction|decrease|less)", t)
    if m:
        return 1 - pct(m.group(1)), 1 - pct(m.group(1))
    m = re.search(r"increas\w*[^.]*?by " + _RANGE + r"\s*%", t)
    if m:
        return 1 + pct(m.group(1)), 1 + pct(m.group(2))
    m = re.search(r"increas\w*[^.]*?by " + _NUM + r"\s*%", t)
    if m:
        return 1 + pct(m.group(1)), 1 + pct(m.group(1))
    m = re.search(_NUM + r"\s*(?:-|to)\s*" + _NUM + r"\s*times", t)
    if m:
        return float(m.group(1)), float(m.group(2))
    m = re.search(_NUM + r"\s*(?:times|x) (?:the )?(?:standard|normal|recommended|higher)", t)
    if m:
        return float(m.group(1)), float(m.group(1))
    if re.search(r"\bdouble the (?:standard |normal |starting )?dose", t):
        return 2.0, 2.0
    return None


_AVOID = re.compile(r"\bavoid\b|contra-?indicated|\bdo not (?:use|prescribe)|should not be used|is not recommended|"
                    r"not be prescribed")
_ALTERNATIVE = re.compile(r"alternative|another (?:drug|medication|agent)|select a (?:drug|medication) not|"
                          r"(?:drug|antidepressant|agent|medication|opioid|statin|therapy|antiplatelet) not "
                          r"(?:predominantly |primarily )?metabolized|consider a non-")
_DECREASE = re.compile(r"(?:reduc|decreas|lower)\w*[^.]{0,40}\bdose|\bdose[^.]{0,30}(?:reduc|decreas)|"
                       r"lower (?:starting |maintenance )?dose|smaller steps|half the|do not exceed")
_INCREASE = re.compile(r"increas\w*[^.]{0,40}\bdose|higher (?:target )?dose|dose[^.]{0,30}increas")
_MONITOR = re.compile(r"monitor|plasma concentration|drug monitoring|\becg\b|be alert")
_STANDARD = re.compile(r"recommended starting dose|standard dose|label[- ]recommended|normal dose|no action|"
                       r"desired starting dose|usual dose|standard (?:starting )?dos|per (?:the )?label|"
                       r"initiate therapy with|use (?:the )?label|normal starting dose|no indication to change|"
                       r"standard of care|per standard dosing")


_NEGATED = re.compile(r"no (?:need|reason) to (?:avoid|change|adjust|alter)|not necessary to avoid|"
                      r"no indication to (?:avoid|change)")


def _positions(t: str, factor) -> dict[str, int | None]:
    """Where each kind of action is first named in `t` (None: not named)."""
    def first(rx) -> int | None:
        m = rx.search(t)
        return m.start() if m else None

    negated = _NEGATED.search(t)
    pos = {
        "avoid": None if negated else first(_AVOID),
        "alternative": first(_ALTERNATIVE),
        "dose_decrease": first(_DECREASE),
        "dose_increase": first(_INCREASE),
        "monitor": first(_MONITOR),
        "standard": negated.start() if negated else first(_STANDARD),
    }
    if factor is not None:  # a stated factor decides the direction even without the usual verbs
        m = re.search(r"\d", t)
        at = m.start() if m else 0
        key = "dose_decrease" if factor[1] < 1 else "dose_increase" if factor[0] > 1 else None
        if key and pos[key] is None:
            pos[key] = at
    return pos


def classify(text: str, strength: str | None, drug_names: list[str]) -> tuple[str, list[str], tuple | None]:
    """(primary action, secondary actions, dose factor) from the recommendation text.

    The first sentence says what to do (the action it names first wins: "start with 50% of the dose or
    avoid X" is a dose change); later sentences add fall-backs ("if X is warranted, ...")."""
    t = main_text(text).lower().strip()
    if strength and strength.lower() == "no recommendation" or re.search(
            r"^no recommendation|does not provide a recommendation|not possible to offer|no (?:dosing )?"
            r"recommendation(?:s)? (?:can be|is|are) (?:made|given)", t):
        return "no_recommendation", [], None
    sentences = [x for x in _SENTENCE.split(t) if x.strip()]
    first = sentences[0] if sentences else ""
    factor = dose_factor(t)
    head = _positions(first, dose_factor(first))
    whole = _positions(t, factor)
    named = sorted((p, a) for a, p in head.items() if p is not None)
    if named:
        primary = named[0][1]
    else:
        later = sorted((p, a) for a, p in whole.items() if p is not None)
        primary = later[0][1] if later else "see_guideline"
    also = [a for a in ("alternative", "dose_decrease", "dose_increase", "monitor")
            if whole[a] is not None and a != primary]
    if primary == "dose_increase" and "dose_decrease" in also and not (factor and factor[1] < 1):
        also.remove("dose_decrease")
    if primary == "dose_decrease" and "dose_increase" in also and not (factor and factor[0] > 1):
        also.remove("dose_increase")
    if primary == "standard" and _NEGATED.search(t):
        also = [a for a in also if a == "monitor"]
    return primary, also, factor


_SUGGESTS = re.compile(r"alternative|consider|such as|e\.g\.|i\.e\.|instead|select|prefer|\buse\b|choose")


def mentioned_drugs(text: str, own: list[str], vocabulary: list[str]) -> list[str]:
    """Drugs a recommendation suggests instead (named in a sentence that proposes, not one that warns)."""
    out: list[str] = []
    for sentence in _SENTENCE.split(main_text(text).lower()):
        sentence = sentence.strip()
        # skip warnings, conditional fall-backs for the same drug family and explicit non-alternatives
        if not _SUGGESTS.search(sentence) or _AVOID.search(sentence) or sentence.startswith("if ") or \
                re.search(r"not (?:an? |a suitable )?alternative|also metaboli", sentence):
            continue
        for name in vocabulary:
            if name in own or name in out:
                continue
            if re.search(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])", sentence):
                out.append(name)
    return out


def read_drug_codes(pypgx_dir: Path | None) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Drug name -> (RxNorm CUI, ATC codes), from PyPGx's CPIC table (MIT)."""
    out: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    path = pypgx_dir / "cpic-table.csv" if pypgx_dir else None
    if path is None or not path.exists():
        return out
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            name = r["Drug"].strip().lower()
            rx = r.get("RxNorm", "").strip() or None
            atc = tuple(a.strip() for a in (r.get("ATC") or "").split(",") if a.strip() and a.strip() != "N/A")
            if name and name not in out:
                out[name] = (rx if rx and rx != "N/A" else None, atc)
    return out


def _lookup(raw: dict) -> dict[str, str | dict[str, int]]:
    out: dict[str, str | dict[str, int]] = {}
    for gene, key in (raw or {}).items():
        out[gene] = {a: int(n) for a, n in key.items()} if isinstance(key, dict) else str(key)
    return out


def read_guidelines(directory: Path, pypgx_dir: Path | None = None) -> tuple[Guideline, ...]:
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise InputFileError(f"{directory}: no guideline *.json files")
    raws = []
    for p in paths:
        try:
            raws.append((p, json.loads(p.read_text())))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{p}: not a valid guideline file ({exc})") from None
    codes = read_drug_codes(pypgx_dir)
    vocabulary = sorted({c["name"].lower() for _, raw in raws for c in raw["guideline"].get("relatedChemicals") or []}
                        | set(codes) | EXTRA_DRUG_NAMES, key=lambda s: (-len(s), s))
    out = []
    for p, raw in raws:
        try:
            g = raw["guideline"]
            drugs = tuple(DrugInfo(name=c["name"].lower(), pharmgkb_id=c.get("id"),
                                   rxnorm=codes.get(c["name"].lower(), (None, ()))[0],
                                   atc=codes.get(c["name"].lower(), (None, ()))[1])
                          for c in g.get("relatedChemicals") or [])
            recs = []
            for r in raw.get("recommendations") or []:
                text = plain_text((r.get("text") or {}).get("html"))
                strength = (r.get("classification") or {}).get("term")
                rec_drugs = [c["name"].lower() for c in r.get("relatedChemicals") or []] or [d.name for d in drugs]
                action, also, factor = classify(text, strength, rec_drugs)
                alts = (mentioned_drugs(text, rec_drugs, vocabulary)
                        if {"alternative", "avoid"} & {action, *also} else [])
                recs.append(GuidelineRecommendation(
                    id=r["id"], population=r.get("population"), strength=strength, lookup=_lookup(r.get("lookupKey")),
                    drugs=tuple(rec_drugs), action=action, also=tuple(also),
                    dose_factor=factor, alternatives=tuple(alts),
                    dosing_information=bool(r.get("dosingInformation")),
                    alternate_drug_available=bool(r.get("alternateDrugAvailable")),
                    other_guidance=bool(r.get("otherPrescribingGuidance")),
                    summary=summary(action, also, factor, " / ".join(rec_drugs), alts),
                ))
            out.append(Guideline(
                id=g["id"], source=g["source"], name=g["name"], url=g.get("url"), version=str(g.get("version")),
                data_version=str(raw.get("version")), drugs=drugs,
                genes=tuple(x["symbol"] for x in g.get("relatedGenes") or [] if x.get("symbol")),
                pmids=tuple(c["pmid"] for c in raw.get("citations") or [] if c.get("pmid")),
                has_recommendations=bool(g.get("recommendation")), recommendations=tuple(recs),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"{p}: unexpected guideline structure ({exc})") from None
    return tuple(out)


# Alternatives that guidelines name but that have no guideline of their own.
EXTRA_DRUG_NAMES = frozenset({
    "prasugrel", "ticagrelor", "granisetron", "morphine", "hydromorphone", "oxymorphone", "buprenorphine",
    "fentanyl", "methadone", "rosuvastatin", "pravastatin", "fluvastatin", "pitavastatin", "aspirin",
    "dolutegravir", "raltegravir", "apixaban", "dabigatran", "rivaroxaban", "sevoflurane", "propofol",
    "nortriptyline", "desipramine", "mirtazapine", "bupropion", "vortioxetine", "desvenlafaxine",
    "levetiracetam", "lamotrigine", "oxcarbazepine", "eslicarbazepine", "lacosamide", "valproic acid",
    "sotalol", "disopyramide", "mexiletine", "dronedarone", "amiodarone", "bisoprolol", "carvedilol",
    "olanzapine", "quetiapine", "clozapine", "aripiprazole", "haloperidol", "paliperidone", "lurasidone",
    "ibuprofen", "naproxen", "diclofenac", "celecoxib", "meloxicam", "tramadol", "codeine",
})
