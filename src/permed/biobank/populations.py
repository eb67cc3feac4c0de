"""Sample -> population groups, from a TSV such as 1000 Genomes' sample table.

Required columns: `sample`, `population`; optional: `superpopulation`. Other columns are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from permed.errors import InputFileError

UNASSIGNED = "(unassigned)"
LEVELS = ("superpopulation", "population")


@dataclass
class Grouping:
    """One way of grouping samples: `labels[codes[i]]` is sample i's group."""

    level: str  # "all", "superpopulation" or "population"
    labels: list[str]
    codes: np.ndarray


@dataclass
class Populations:
    source: str
    table: dict[str, dict[str, str]]  # sample -> level -> group
    levels: tuple[str, ...]

    def groupings(self, samples: list[str]) -> list[Grouping]:
        out = []
        for level in self.levels:
            names = [self.table.get(s, {}).get(level) or UNASSIGNED for s in samples]
            labels = sorted(set(names), key=lambda x: (x == UNASSIGNED, x))
            index = {x: i for i, x in enumerate(labels)}
            out.append(Grouping(level, labels, np.array([index[x] for x in names], dtype=np.int64)))
        return out

    def unassigned(self, samples: list[str]) -> int:
        return sum(1 for s in samples if s not in self.table)


def overall(samples: list[str]) -> Grouping:
    return Grouping("all", ["ALL"], np.zeros(len(samples), dtype=np.int64))


def read_populations(path: Path) -> Populations:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path}: populations file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    lines = text.splitlines()
    if not lines:
        raise InputFileError(f"{path}: line 1: empty file; expected a header with columns sample, population")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if "sample" not in header or "population" not in header:
        raise InputFileError(f"{path}: line 1: header must name tab-separated columns 'sample' and 'population' "
                        f"(found {', '.join(header)})")
    cols = {name: header.index(name) for name in ("sample", *LEVELS) if name in header}
    levels = tuple(x for x in LEVELS if x in cols)
    table: dict[str, dict[str, str]] = {}
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) <= max(cols.values()):
            raise InputFileError(f"{path}: line {no}: expected at least {max(cols.values()) + 1} tab-separated "
                            f"fields, found {len(fields)}")
        sample = fields[cols["sample"]].strip()
        if not sample:
            raise InputFileError(f"{path}: line {no}: empty sample name")
        if sample in table:
            raise InputFileError(f"{path}: line {no}: sample {sample!r} is listed twice")
        table[sample] = {level: fields[cols[level]].strip() for level in levels}
    return Populations(str(path), table, levels)
