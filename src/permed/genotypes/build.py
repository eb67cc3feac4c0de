"""Refuse input that is not on GRCh38: definition coordinates would silently point at other bases."""

from __future__ import annotations

import re

from permed.errors import InputFileError

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


def _fields(body: str) -> dict[str, str]:
    out = {}
    for part in re.findall(r'(\w+)=("[^"]*"|[^,]*)', body):
        out[part[0]] = part[1].strip('"')
    return out


def check_build_header(where: str, header: str) -> None:
    for m in _CONTIG.finditer(header):
        f = _fields(m.group(1))
        name = f.get("ID", "").removeprefix("chr")
        length = f.get("length")
        assembly = f.get("assembly", "")
        if assembly and _B37_WORDS.search(assembly):
            raise InputFileError(f"{where}: contig {f.get('ID')} is declared as assembly {assembly}; "
                            "permed needs GRCh38 coordinates (lift over or re-align to GRCh38)")
        if length and length.isdigit() and name in GRCH37_LENGTHS and int(length) == GRCH37_LENGTHS[name]:
            raise InputFileError(f"{where}: contig {f.get('ID')} has the GRCh37 length {length}; "
                            "permed needs GRCh38 coordinates (lift over or re-align to GRCh38)")
    ref = re.search(r"^##reference=(.*)$", header, re.M)
    if ref and _B37_WORDS.search(ref.group(1)) and not re.search(r"(GRCh38|hg38)", ref.group(1), re.I):
        raise InputFileError(f"{where}: ##reference={ref.group(1).strip()} is a GRCh37 reference; "
                        "permed needs GRCh38 coordinates")


def check_build_mismatches(where: str, checked: int, mismatched: int) -> None:
    """Many REF disagreements at definition SNV positions mean the coordinates are another build."""
    if checked >= 5 and mismatched * 2 > checked:
        raise InputFileError(
            f"{where}: REF disagrees with GRCh38 at {mismatched} of {checked} definition positions present; "
            "the file looks like another genome build (e.g. GRCh37): lift over to GRCh38 first"
        )
