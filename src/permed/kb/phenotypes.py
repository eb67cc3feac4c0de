"""Convert phenotype facts (allele function, activity values, diplotype -> phenotype) into the KB.

Sources, in order of preference per gene:
* PharmCAT release phenotype files (`<release>/phenotype/<GENE>.json`, CPIC assignments);
* extra PharmCAT-format directories (e.g. the 2024-05 CPIC copy that holds CYP2D6);
* PyPGx tables (MIT) for G6PD (diplotype table incl. hemizygous males) and RYR1 (allele functions).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from permed.errors import InputFileError
from permed.kb.model import GenePhenotypes, PhenotypeRow

RYR1_RULE = "malignant-hyperthermia"
RYR1_MHS_FUNCTION = "Malignant Hyperthermia Associated"


def _gene_symbol(path: Path, raw: dict) -> str:
    return raw.get("gene") or path.stem.replace("_", "-")


def read_pharmcat_phenotypes(path: Path, source: str) -> GenePhenotypes:
    try:
        raw = json.loads(path.read_text())
        functions = {a["name"]: a["functionValue"] for a in raw.get("namedAlleles") or [] if a.get("functionValue")}
        activity = {k: v for k, v in (raw.get("activityValues") or {}).items() if v is not None}
        rows = []
        for d in raw["diplotypes"]:
            alleles = tuple(sorted(n for n, count in d["diplotypekey"].items() for _ in range(count)))
            rows.append(PhenotypeRow(alleles=alleles, phenotype=d["phenotype"], activity_score=d.get("activityScore"),
                                     lookup_key=d["lookupkey"]))
        return GenePhenotypes(gene=_gene_symbol(path, raw), source=source,
                              data_version=str(raw.get("version") or "unknown"),
                              functions=functions, activity=activity, rows=tuple(rows))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: not a valid phenotype file ({exc})") from None


def read_pypgx(pypgx_dir: Path, definition_alleles: dict[str, list[str]]) -> dict[str, GenePhenotypes]:
    """G6PD and RYR1 facts from PyPGx tables, restricted to the alleles the definitions name."""
    out: dict[str, GenePhenotypes] = {}
    alleles_csv = pypgx_dir / "allele-table.csv"
    dips_csv = pypgx_dir / "diplotype-table.csv"
    if not alleles_csv.exists():
        return out
    with open(alleles_csv, newline="") as fh:
        allele_rows = list(csv.DictReader(fh))
    source = "PyPGx tables (MIT)"
    version = "unversioned copy"  # the shipped tables carry no release number

    ryr1 = definition_alleles.get("RYR1")
    if ryr1:
        fn = {r["StarAllele"]: r["Function"] for r in allele_rows if r["Gene"] == "RYR1"}
        # CPIC classifies RYR1 alleles as MH-associated or of uncertain function; the table lists the former
        functions = {a: ("Normal function" if a == "Reference" else fn.get(a, "Uncertain function")) for a in ryr1}
        out["RYR1"] = GenePhenotypes(gene="RYR1", source=source, data_version=version, functions=functions,
                                     rule=RYR1_RULE)

    g6pd = definition_alleles.get("G6PD")
    if g6pd and dips_csv.exists():
        known = set(g6pd)
        functions = {r["StarAllele"]: r["Function"] for r in allele_rows
                     if r["Gene"] == "G6PD" and r["StarAllele"] in known}
        rows = []
        with open(dips_csv, newline="") as fh:
            for r in csv.DictReader(fh):
                if r["Gene"] != "G6PD":
                    continue
                a, b = r["Diplotype"].split("/", 1)
                phenotype = r["Phenotype"].removeprefix("G6PD ").strip()
                if b == "MALE" and a in known:
                    alleles = (a,)  # hemizygous
                elif a in known and b in known:
                    alleles = tuple(sorted((a, b)))
                else:
                    continue
                rows.append(PhenotypeRow(alleles, phenotype, None, phenotype))
        out["G6PD"] = GenePhenotypes(gene="G6PD", source=source, data_version=version, functions=functions,
                                     rows=tuple(rows))
    return out


def build_phenotypes(release_dir: Path, extra_dirs: list[Path], pypgx_dir: Path | None,
                     definition_alleles: dict[str, list[str]], release: str) -> dict[str, GenePhenotypes]:
    out: dict[str, GenePhenotypes] = {}
    pdir = release_dir / "phenotype"
    if pdir.is_dir():
        for path in sorted(pdir.glob("*.json")):
            gp = read_pharmcat_phenotypes(path, f"PharmCAT {release} phenotype data")
            out[gp.gene] = gp
    for d in extra_dirs:
        for path in sorted(Path(d).glob("*.json")):
            label = Path(d).as_posix().split("/reference/")[-1]
            gp = read_pharmcat_phenotypes(path, f"PharmCAT phenotype data from {label}")
            out.setdefault(gp.gene, gp)
    if pypgx_dir is not None:
        for gene, gp in read_pypgx(pypgx_dir, definition_alleles).items():
            out.setdefault(gene, gp)
    return dict(sorted(out.items()))
