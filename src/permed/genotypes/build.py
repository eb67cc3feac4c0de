"""Which genome build a VCF is on: definition coordinates read on the wrong build point at other bases.

permed reads GRCh38 (the definitions' build) and GRCh37 (through the knowledge base's GRCh37 positions).
The build is taken from the option, the header (contig lengths, assembly, ##reference) and the records
(known variants at either build's definition positions); where they disagree the file is refused, naming
what each says, rather than read on a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from permed.errors import InputFileError

GRCH38, GRCH37, AUTO = "GRCh38", "GRCh37", "auto"

# Chromosome lengths of GRCh37/hg19 (differ from GRCh38 for every chromosome used by the definitions).
GRCH37_LENGTHS = {
    "1": 249250621, "2": 243199373, "4": 191154276, "6": 171115067, "7": 159138663, "8": 146364022,
    "10": 135534747, "12": 133851895, "13": 115169878, "16": 90354753, "19": 59128983, "22": 51304566,
    "X": 155270560,
}
GRCH38_LENGTHS = {
    "1": 248956422, "2": 242193529, "4": 190214555, "6": 170805979, "7": 159345973, "8": 145138636,
    "10": 133797422, "12": 133275309, "13": 114364328, "16": 90338345, "19": 58617616, "22": 50818468,
    "X": 156040895,
}
_CONTIG = re.compile(r"^##contig=<(.*)>\s*$", re.M)
_B37_WORDS = re.compile(r"(GRCh37|hg19|b37|hs37d5|human_g1k_v37)", re.I)
_B38_WORDS = re.compile(r"(GRCh38|hg38|hs38)", re.I)


def _fields(body: str) -> dict[str, str]:
    out = {}
    for part in re.findall(r'(\w+)=("[^"]*"|[^,]*)', body):
        out[part[0]] = part[1].strip('"')
    return out


@dataclass(frozen=True)
class HeaderBuild:
    build: str | None  # GRCh38, GRCh37, or None when the header does not say
    reason: str = ""  # what in the header says so


def header_build(where: str, header: str) -> HeaderBuild:
    """The build the header declares; a header that names both builds is refused."""
    said: dict[str, str] = {}
    for m in _CONTIG.finditer(header):
        f = _fields(m.group(1))
        name = f.get("ID", "").removeprefix("chr")
        length = f.get("length", "")
        assembly = f.get("assembly", "")
        if assembly and _B37_WORDS.search(assembly):
            said.setdefault(GRCH37, f"contig {f.get('ID')} is declared as assembly {assembly}")
        elif assembly and _B38_WORDS.search(assembly):
            said.setdefault(GRCH38, f"contig {f.get('ID')} is declared as assembly {assembly}")
        if length.isdigit() and name in GRCH37_LENGTHS:
            if int(length) == GRCH37_LENGTHS[name]:
                said.setdefault(GRCH37, f"contig {f.get('ID')} has the GRCh37 length {length}")
            elif int(length) == GRCH38_LENGTHS[name]:
                said.setdefault(GRCH38, f"contig {f.get('ID')} has the GRCh38 length {length}")
    ref = re.search(r"^##reference=(.*)$", header, re.M)
    if ref:
        text = ref.group(1).strip()
        b37, b38 = _B37_WORDS.search(text), _B38_WORDS.search(text)
        if b37 and not b38:
            said.setdefault(GRCH37, f"##reference={text} is a GRCh37 reference")
        elif b38 and not b37:
            said.setdefault(GRCH38, f"##reference={text} is a GRCh38 reference")
    if len(said) > 1:
        raise InputFileError(f"{where}: the header names both builds ({said[GRCH37]}, but {said[GRCH38]}); "
                             "fix the header")
    if not said:
        return HeaderBuild(None)
    build, reason = next(iter(said.items()))
    return HeaderBuild(build, reason)


@dataclass
class DataEvidence:
    """Definition SNV positions, per build, holding a record with that build's base there (`ref`) and also a
    variant allele the definitions know (`known`): a file's records sit at one build's positions."""

    ref: dict[str, set] = field(default_factory=lambda: {GRCH38: set(), GRCH37: set()})
    known: dict[str, set] = field(default_factory=lambda: {GRCH38: set(), GRCH37: set()})

    def add(self, build: str, chrom: str, pos: int, site: tuple[str, frozenset], ref: str, alts) -> None:
        if ref.upper() == site[0]:
            self.ref[build].add((chrom, pos))
            if any(a.upper() in site[1] for a in alts):
                self.known[build].add((chrom, pos))

    def build(self) -> str | None:
        """The build the records show: more known variants at its positions than records agreeing with the
        other build's bases at the other's (the two cannot both hold); None when they show neither."""
        for b, other in ((GRCH37, GRCH38), (GRCH38, GRCH37)):
            if self.known[b] and len(self.known[b]) > len(self.ref[other]):
                return b
        return None

    def describe(self, build: str) -> str:
        other = GRCH38 if build == GRCH37 else GRCH37
        chrom, pos = min(self.known[build])
        return (f"{len(self.known[build])} record(s) carry known variants at their {build} positions "
                f"(e.g. {chrom}:{pos}) and {len(self.ref[other])} sit at {other} definition positions")


def check_build_mismatches(where: str, checked: int, mismatched: int, build: str = GRCH38) -> None:
    """Many REF disagreements at definition SNV positions mean the coordinates are another build."""
    if checked >= 5 and mismatched * 2 > checked:
        other = "e.g. GRCh37" if build == GRCH38 else "e.g. GRCh38"
        raise InputFileError(
            f"{where}: REF disagrees with {build} at {mismatched} of {checked} definition positions present; "
            f"the file looks like another genome build ({other}): lift over to GRCh38 first"
        )
