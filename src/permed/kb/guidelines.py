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

from permed.errors import UserError
from permed.kb.model import DrugInfo, Guideline, GuidelineRecommendation

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
    m = re.search(_NUM + r"\s*times (?:the )?(?:standard|normal|recommended)", t)
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


def _features(t: str, factor) -> dict[str, bool]:
    return {
        "avoid": bool(_AVOID.search(t)),
        "alternative": bool(_ALTERNATIVE.search(t)),
        "dose_decrease": factor is not None and factor[1] < 1 or bool(_DECREASE.search(t)),
        "dose_increase": factor is not None and factor[0] > 1 or bool(_INCREASE.search(t)),
        "monitor": bool(_MONITOR.search(t)),
        "standard": bool(_STANDARD.search(t)),
    }


def classify(text: str, strength: str | None, drug_names: list[str]) -> tuple[str, list[str], tuple | None]:
    """(primary action, secondary actions, dose factor) from the recommendation text.

    The first sentence says what to do; later sentences add fall-backs ("if X is warranted, ...")."""
    t = main_text(text).lower().strip()
    if strength and strength.lower() == "no recommendation" or re.search(
            r"^no recommendation|does not provide a recommendation|not possible to offer|no (?:dosing )?"
            r"recommendation(?:s)? (?:can be|is|are) (?:made|given)", t):
        return "no_recommendation", [], None
    sentences = [x for x in _SENTENCE.split(t) if x.strip()]
    first = sentences[0] if sentences else ""
    factor = dose_factor(t)
    head = _features(first, dose_factor(first))
    whole = _features(t, factor)
    order = ("avoid", "alternative", "dose_decrease", "dose_increase", "standard", "monitor")
    primary = next((a for a in order if head[a]), None)
    if primary is None:
        primary = next((a for a in order if whole[a] and a != "avoid"), "see_guideline")
        if whole["avoid"] and any(x.startswith(("avoid", "do not")) for x in sentences):
            primary = "avoid"
    if primary == "dose_decrease" and head["dose_increase"] and factor and factor[0] > 1:
        primary = "dose_increase"
    also = [a for a in ("alternative", "dose_decrease", "dose_increase", "monitor") if whole[a] and a != primary]
    if primary == "dose_increase" and "dose_decrease" in also and not (factor and factor[1] < 1):
        also.remove("dose_decrease")
    if primary == "dose_decrease" and "dose_increase" in also and not (factor and factor[0] > 1):
        also.remove("dose_increase")
    return primary, also, factor


def mentioned_drugs(text: str, own: list[str], vocabulary: list[str]) -> list[str]:
    """Other drugs a recommendation names (candidate alternatives), from a vocabulary of drug names."""
    t = main_text(text).lower()
    out = []
    for name in vocabulary:
        if name in own or name in out:
            continue
        if re.search(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])", t):
            out.append(name)
    return out


def summary(action: str, also: list[str], factor: tuple | None, drug: str, alternatives: list[str]) -> str:
    """permed's own one-line summary of a recommendation, written from its structured facts."""
    def pct(x: float) -> str:
        return f"{round(x * 100):d}%"

    factor_text = ""
    if factor:
        lo, hi = factor
        factor_text = pct(lo) if lo == hi else f"{pct(lo)}–{pct(hi)}"
    parts = {
        "avoid": f"Avoid {drug}.",
        "alternative": "Prefer an alternative drug.",
        "dose_decrease": f"Use a lower dose ({factor_text} of standard)." if factor_text else "Use a lower dose.",
        "dose_increase": f"Use a higher dose ({factor_text} of standard)." if factor_text else "Use a higher dose.",
        "monitor": "Monitor response, adverse effects or drug levels.",
        "standard": "Standard dosing." if not factor_text else f"Dose {factor_text} of standard.",
        "no_recommendation": "No genotype-based recommendation.",
        "see_guideline": "Genotype-specific advice; see the guideline.",
    }
    out = [parts[action]]
    named = f" (e.g. {', '.join(alternatives[:3])})" if alternatives else ""
    if action == "alternative" and named:
        out[0] = f"Prefer an alternative drug{named}."
        named = ""
    for a in also:
        if a == "alternative":
            out.append(f"An alternative drug may be preferred{named}.")
            named = ""
        elif a in ("dose_decrease", "dose_increase") and action in ("avoid", "alternative"):
            out.append("If used: " + parts[a][0].lower() + parts[a][1:])
        elif a == "monitor":
            out.append(parts["monitor"])
    if named:
        out.append(f"Alternatives named{named[:-1].replace(' (e.g.', ':')}.")
    return " ".join(out)


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
        raise UserError(f"{directory}: no guideline *.json files")
    raws = []
    for p in paths:
        try:
            raws.append((p, json.loads(p.read_text())))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{p}: not a valid guideline file ({exc})") from None
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
            raise UserError(f"{p}: unexpected guideline structure ({exc})") from None
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
