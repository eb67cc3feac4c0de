"""Outside calls: diplotypes, phenotypes or activity scores made by other tools (PharmCAT's TSV format).

Columns (TAB-separated, `#` comments, blank lines skipped): gene, diplotype, phenotype, activity score;
further columns are ignored. A line that cannot be used makes its gene "not called" with the reason;
other genes are unaffected. Only an unreadable file, or a line that names no gene, stops the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from permed.errors import OutsideCallsError
from permed.phenotype.annotate import GeneAnnotator

SINGLE_ALLELE_ONLY = frozenset({"MT-RNR1"})  # one mitochondrial genome: never two alleles
ONE_OR_TWO_ALLELES = frozenset({"G6PD", "HLA-A", "HLA-B"})  # X-linked; allele presence
NO_CALL = frozenset({".", "./."})
_CYP2D6_SUBALLELE = re.compile(r"(\*\d+)\.\d+")
_METABOLIZER = re.compile(r"metaboli[sz]ers?", re.IGNORECASE)
_ABBREVIATIONS = {
    "em": "Normal Metabolizer", "im": "Intermediate Metabolizer", "nm": "Normal Metabolizer",
    "pm": "Poor Metabolizer", "um": "Ultrarapid Metabolizer",
}


@dataclass
class OutsideCall:
    gene: str
    where: str  # "file:line"
    diplotype: str | None = None  # normalised, input order kept ("*2/*1")
    alleles: list[str] = field(default_factory=list)
    phenotype: str | None = None
    activity_score: str | None = None
    no_call: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class OutsideCallError:
    gene: str
    where: str
    reason: str


def normalize_phenotype(text: str | None, gene: str) -> str | None:
    """Common spellings to the CPIC terms: "PM" -> "Poor Metabolizer", "likely poor metaboliser" -> ..."""
    if text is None:
        return None
    t = re.sub(r"\s+", " ", text.replace(gene, "")).strip()
    if not t:
        return None
    t = _METABOLIZER.sub("Metabolizer", t)
    low = t.lower()
    if low in _ABBREVIATIONS:
        return _ABBREVIATIONS[low]
    if "indeterminate" in low:
        return "Indeterminate"
    low = low.replace("extensive", "normal")
    for key in sorted(_ABBREVIATIONS):
        phrase = _ABBREVIATIONS[key]
        if phrase.lower() in low:
            if low.startswith("likely"):
                return f"Likely {phrase}"
            if low.startswith("possible"):
                return f"Possible {phrase}"
            return phrase
    return t


def _normalize_allele(gene: str, allele: str, warnings: list[str]) -> str:
    a = allele.strip()
    if a.startswith(gene):
        a = a[len(gene):].strip()
    if gene == "CYP2D6":
        m = _CYP2D6_SUBALLELE.fullmatch(a)
        if m:
            warnings.append(f"CYP2D6 sub-alleles are not used: {a!r} read as {m.group(1)!r}")
            a = m.group(1)
    elif gene in ("HLA-A", "HLA-B"):
        letter = gene[-1]
        if a.startswith(letter + "*"):
            warnings.append(f"{gene} allele {a!r} read as {a[1:]!r}")
            a = a[1:]
        if not a.startswith("*"):
            raise ValueError(f"invalid {gene} allele {allele.strip()!r} (expected *NN:NN)")
        fields = a[1:].split(":")
        if len(fields) > 2:
            short = "*" + ":".join(fields[:2])
            warnings.append(f"{gene} alleles are used at two-field resolution: {a!r} read as {short!r}")
            a = short
    return a


def _parse_line(fields: list[str], where: str, known_gene, annotator) -> OutsideCall | OutsideCallError:
    gene = fields[0]
    if len(fields) < 2:
        return OutsideCallError(gene, where, f"expected at least 2 TAB-separated fields, found {len(fields)}")
    if not known_gene(gene):
        return OutsideCallError(gene, where, f"unknown gene {gene!r}")
    raw_dip = fields[1] or None
    phenotype = normalize_phenotype(fields[2], gene) if len(fields) > 2 else None
    score = (fields[3] or None) if len(fields) > 3 else None
    if raw_dip is None and phenotype is None and score is None:
        return OutsideCallError(gene, where, "give a diplotype, a phenotype or an activity score")
    if raw_dip == "/":
        return OutsideCallError(gene, where, "invalid diplotype '/'")
    call = OutsideCall(gene=gene, where=where, phenotype=phenotype, activity_score=score)
    if raw_dip in NO_CALL:
        call.no_call = True
        return call
    if raw_dip is None:
        return call
    parts = [p.strip() for p in raw_dip.split("/")]
    if len(parts) > 2:
        return OutsideCallError(gene, where, f"too many alleles in {raw_dip!r}")
    if len(parts) == 2 and gene in SINGLE_ALLELE_ONLY:
        return OutsideCallError(gene, where, f"{gene} has a single allele; two were given in {raw_dip!r}")
    if len(parts) == 1 and gene not in SINGLE_ALLELE_ONLY | ONE_OR_TWO_ALLELES:
        return OutsideCallError(gene, where, f"expected two alleles separated by '/', found {raw_dip!r}")
    try:
        alleles = [_normalize_allele(gene, p, call.warnings) for p in parts]
    except ValueError as exc:
        return OutsideCallError(gene, where, str(exc))
    if any(not a for a in alleles):
        return OutsideCallError(gene, where, f"empty allele in {raw_dip!r}")
    ann: GeneAnnotator = annotator(gene)
    for a in alleles:
        check = cyp2d6_copy_number(a, ann) if gene == "CYP2D6" else a
        if not ann.is_known_allele(check):
            call.warnings.append(f"{gene} allele {a!r} is not in the knowledge base; no phenotype can be assigned")
    call.alleles = alleles
    call.diplotype = "/".join(alleles)
    return call


@dataclass(frozen=True)
class OutsideCallsText:
    """Outside calls received as text (e.g. a service upload); `name` stands in for a file name.
    `format`: one of permed.phenotype.caller_formats.FORMATS, or None to detect it from the text."""

    name: str
    text: str
    format: str | None = None

    def __str__(self) -> str:
        return self.name


def source_content(source: Path | OutsideCallsText) -> tuple[bytes, str | None]:
    """(bytes, UTF-8 text or None when the bytes are not text, e.g. a zip archive)."""
    if isinstance(source, OutsideCallsText):
        return source.text.encode("utf-8"), source.text
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise OutsideCallsError(f"{source}: cannot read outside calls ({exc.strerror or exc})") from None
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data, None


def read_outside_calls(source: Path | OutsideCallsText, known_gene, annotator,
                       text: str | None = None) -> tuple[list[OutsideCall], list[OutsideCallError]]:
    """Parse one file or text. `known_gene(gene)` says whether a gene can be reported; `annotator(gene)` gives facts."""
    if text is None:
        data, text = source_content(source)
        if text is None:
            try:
                data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise OutsideCallsError(f"{source}: outside calls are not UTF-8 text (byte {exc.start})") from None
    calls: list[OutsideCall] = []
    errors: list[OutsideCallError] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        where = f"{source}:{n}"
        if not fields[0]:
            raise OutsideCallsError(f"{where}: outside call names no gene (first column is empty)")
        res = _parse_line(fields, where, known_gene, annotator)
        (errors if isinstance(res, OutsideCallError) else calls).append(res)
    return calls, errors


_COPY_NUMBER = re.compile(r"(\*\d+)[xX]≥?(\d+)")


def cyp2d6_copy_number(allele: str, ann: GeneAnnotator) -> str:
    """"*1x7" -> "*1x≥3" when the phenotype table has a "≥3 copies" entry for that allele."""
    m = _COPY_NUMBER.fullmatch(allele)
    if not m or ann.table is None:
        return allele
    star, copies = m.group(1), int(m.group(2))
    target = f"{star}x≥3"
    if copies > 2 and target in ann.table.activity:
        return target
    return allele
