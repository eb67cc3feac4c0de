"""Build permed's knowledge base from a PharmCAT data release.

Only facts are carried over: positions, reference/alternate alleles, allele names and
their defining alleles, and the matcher exemptions.  Scores and core positions are
recomputed from the definitions rather than trusted, so test definitions without those
fields convert the same way as release files.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
from pathlib import Path

from permed.errors import InputFileError
from permed.kb.model import (
    KB_SCHEMA,
    Exemptions,
    ExtraLocus,
    GeneDefinition,
    Grch37Site,
    KnowledgeBase,
    Locus,
    NamedAllele,
    SourceInfo,
    UnphasedPriority,
)

KB_LICENCE = (
    "Allele definitions: CPIC (CC0 1.0) and PharmVar; curated by ClinPGx/PharmGKB (CC BY-SA 4.0). "
    "This derived knowledge base is distributed under CC BY-SA 4.0."
)
KB_ATTRIBUTION = (
    "Derived from PharmCAT allele definition files (https://github.com/PharmGKB/PharmCAT), "
    "data by ClinPGx/PharmGKB (https://www.clinpgx.org) and CPIC (https://cpicpgx.org)."
)
DEFINITION_SUFFIX = "_translation.json"
FROM_TABLE, INTERPOLATED = "pypgx", "interpolated"  # Locus.grch37_source


def _split_hgvs(name: str | None, ref: str, alts: list[str]) -> tuple[str, ...]:
    """Align PharmCAT's '; '-joined HGVS names with the ALT alleles.

    Upstream lists are not always in ALT order (e.g. CFTR rs77834169 lists C>T before C>G),
    so SNV names are matched by their alternate base; anything else falls back to list order.
    """
    parts = [p.strip() for p in (name or "").split(";") if p.strip()]
    out: list[str] = []
    for i, alt in enumerate(alts):
        match = next((p for p in parts if len(ref) == 1 and len(alt) == 1 and p.endswith(f"{ref}>{alt}")), None)
        if match is None:
            match = parts[i] if i < len(parts) else None
        out.append(match or f"g.?{ref}>{alt}")
    return tuple(out)


def _convert_locus(v: dict) -> Locus:
    alts = list(v.get("alts") or [])
    return Locus(
        position=int(v["position"]),
        rsid=v.get("rsid"),
        ref=v["ref"],
        alts=tuple(alts),
        hgvs=_split_hgvs(v.get("chromosomeHgvsName"), v["ref"], alts),
    )


def _convert_exemptions(e: dict | None) -> Exemptions:
    if not e:
        return Exemptions()
    return Exemptions(
        required_positions=tuple(int(p) for p in e.get("requiredPositions") or []),
        ignored_alleles=tuple(e.get("ignoredAlleles") or []),
        ignored_positions=tuple(int(p["position"]) for p in e.get("ignoredPositions") or []),
        unphased_priorities=tuple(
            UnphasedPriority(diplotypes=tuple(p["list"]), pick=p["pick"])
            for p in e.get("unphasedDiplotypePriorities") or []
        ),
        extra_loci=tuple(
            ExtraLocus(position=int(p["position"]), rsid=p.get("rsid"), ref=p["ref"], alts=tuple(p.get("alts") or []))
            for p in e.get("extraPositions") or []
        ),
        amp1_alleles=tuple(e.get("amp1Alleles") or []),
        amp1_positions=tuple(int(p) for p in e.get("amp1Positions") or []),
    )


def convert_definition(raw: dict, exemptions: dict | None = None, where: str = "") -> GeneDefinition:
    """Convert one PharmCAT `<GENE>_translation.json` document."""
    try:
        loci = tuple(_convert_locus(v) for v in raw["variants"])
        alleles = []
        for a in raw["namedAlleles"]:
            values = a["alleles"]
            if len(values) != len(loci):
                raise ValueError(f"allele {a['name']!r} has {len(values)} alleles for {len(loci)} positions")
            alleles.append(
                NamedAllele(
                    name=a["name"],
                    id=a.get("id"),
                    reference=bool(a.get("reference")),
                    structural=bool(a.get("structuralVariant")),
                    defined={i: x.upper() for i, x in enumerate(values) if x is not None},
                )
            )
        # older/test definition files mark no reference: the first row is the reference (PharmCAT convention)
        if alleles and not any(a.reference for a in alleles):
            alleles[0] = alleles[0].model_copy(update={"reference": True})
        return GeneDefinition(
            gene=raw["gene"],
            chromosome=raw["chromosome"],
            genome_build=raw.get("genomeBuild") or "GRCh38",
            refseq_chromosome=raw.get("refSeqChromosomeId"),
            data_source=raw.get("source"),
            data_version=raw.get("version") or raw.get("dataVersion"),
            loci=loci,
            alleles=tuple(alleles),
            exemptions=_convert_exemptions(exemptions),
            suballeles=dict(raw.get("suballelesMap") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{where}: not a valid allele definition ({exc})") from None


def read_definition_file(path: Path, exemptions: dict | None = None) -> GeneDefinition:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read allele definition ({exc})") from None
    gene = raw.get("gene") if isinstance(raw, dict) else None
    ex = (exemptions or {}).get(gene) if gene else None
    return convert_definition(raw, ex, where=str(path))


def read_exemptions(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read exemptions ({exc})") from None
    if isinstance(data, list):  # older releases stored a list
        data = {e["gene"]: e for e in data}
    return data


def find_definition_dir(source: Path) -> Path:
    """Accept a release root (with definition/) or the definition directory itself."""
    for cand in (source / "definition", source / "definitions", source):
        if cand.is_dir() and any(cand.glob(f"*{DEFINITION_SUFFIX}")):
            return cand
    raise InputFileError(f"{source}: no *{DEFINITION_SUFFIX} allele definition files found")


def read_grch37_sites(table: Path, genes: dict[str, GeneDefinition]) -> tuple[Grch37Site, ...]:
    """GRCh37 positions of definition SNVs from PyPGx's variant table (GRCh37 and GRCh38 coordinates of the
    variants it knows), kept only where the table's GRCh38 position and alleles agree with the definition."""
    import csv

    snvs = {}
    for gdef in genes.values():
        for loc in gdef.loci:
            if loc.is_snv:
                snvs[(gdef.chromosome, loc.position)] = loc
    sites = {}
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                chrom = "chr" + row["Chromosome"].removeprefix("chr")
                p38, p37 = int(row["GRCh38Position"]), int(row["GRCh37Position"])
            except (KeyError, ValueError):
                continue
            loc = snvs.get((chrom, p38))
            ref37, alt = row.get("GRCh37Allele", ""), row.get("Variant", "")
            if (loc is None or row.get("GRCh38Allele") != loc.ref or alt not in loc.alts or len(ref37) != 1
                    or p37 == p38):
                continue
            sites[(chrom, p38, alt)] = Grch37Site(chromosome=chrom, position=p38, position37=p37, ref37=ref37, alt=alt)
    return tuple(sites[k] for k in sorted(sites))


def _table_rows(table: Path) -> dict[tuple[str, int], list[dict]]:
    """PyPGx's variant table by GRCh38 position (rows whose coordinates parse)."""
    import csv

    rows: dict[tuple[str, int], list[dict]] = {}
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                key = ("chr" + row["Chromosome"].removeprefix("chr"), int(row["GRCh38Position"]))
                row["p37"] = int(row["GRCh37Position"])
            except (KeyError, ValueError, AttributeError):
                continue
            rows.setdefault(key, []).append(row)
    return rows


def _locus_on_grch37(ref: str, is_snv: bool, alts: tuple[str, ...], rows: list[dict]) -> tuple[int, str | None] | str:
    """(GRCh37 position, GRCh37 base where it differs) for a definition locus from the table's rows at its
    GRCh38 position, or why it cannot be mapped. Both builds' alleles are left-anchored VCF alleles starting at
    the position, so a row vouches for the locus when its GRCh38 allele agrees with the locus REF; an indel is
    mapped only when a row's allele spans its whole REF with the same sequence on both builds."""
    if not rows:
        return "not in the table"
    agree = [r for r in rows if r["GRCh38Allele"] and (r["GRCh38Allele"].startswith(ref) or
                                                       ref.startswith(r["GRCh38Allele"]))]
    if not agree:
        return "the table's GRCh38 allele differs from the definition's REF"
    if len({r["p37"] for r in agree}) > 1:
        return "the table gives several GRCh37 positions"
    p37 = agree[0]["p37"]
    if is_snv:
        # the first base of either build's allele is the base at the position
        same = [r for r in agree if r["GRCh37Allele"] == r["GRCh38Allele"]
                or (len(r["GRCh37Allele"]) == len(r["GRCh38Allele"]) == 1)]
        bases = {r["GRCh37Allele"][:1] for r in same}
        if len(bases) != 1:
            return "the table's GRCh37 alleles disagree" if bases else "the builds differ in length here"
        b37 = bases.pop()
        if b37 == ref:
            return p37, None
        if b37 in alts:
            return p37, b37
        return f"GRCh37's base {b37} is not an allele of the definition"
    if any(len(r["GRCh38Allele"]) >= len(ref) and r["GRCh37Allele"] == r["GRCh38Allele"] for r in agree):
        return p37, None
    return "no row spans the indel's REF with the same sequence on both builds"


def map_grch37(table: Path, genes: dict[str, GeneDefinition]) -> tuple[dict[str, GeneDefinition],
                                                                        dict[str, list[tuple[int, str]]]]:
    """Every definition locus (and context position) with its GRCh37 position from PyPGx's variant table, where
    the table vouches for it; and per gene the positions left unmapped with the reason."""
    rows = _table_rows(table)
    out, unmapped = {}, {}
    for g, gdef in genes.items():
        loci = []
        for loc in gdef.loci:
            m = _locus_on_grch37(loc.ref, loc.is_snv, loc.alts, rows.get((gdef.chromosome, loc.position), []))
            if isinstance(m, str):
                unmapped.setdefault(g, []).append((loc.position, m))
                loci.append(loc)
            else:
                loci.append(loc.model_copy(update={"position37": m[0], "ref37": m[1], "grch37_source": FROM_TABLE}))
        extra = []
        for x in gdef.exemptions.extra_loci:
            m = _locus_on_grch37(x.ref, len(x.ref) == 1 and all(len(a) == 1 for a in x.alts), x.alts,
                                 rows.get((gdef.chromosome, x.position), []))
            # context positions are only shown, never matched: map them only where GRCh37's base is the same
            extra.append(x if isinstance(m, str) or m[1] else x.model_copy(update={"position37": m[0]}))
        ex = gdef.exemptions.model_copy(update={"extra_loci": tuple(extra)})
        # validate the copies (model_copy does not): a wrong GRCh37 base must fail the build, not a run
        out[g] = GeneDefinition.model_validate(gdef.model_copy(update={"loci": tuple(loci), "exemptions": ex})
                                               .model_dump())
    return out, unmapped


def _exon_pairs(gene_table: Path) -> dict[str, list[tuple[int, int]]]:
    """Per gene, (GRCh38, GRCh37) positions of the inner exon boundaries PyPGx's gene table gives on both builds:
    every exon start but the first and every end but the last. A transcript's outer ends are left out: each
    build's annotation may use another transcript version there (they disagree for several genes), so they are
    not the same base on both builds."""
    import csv

    def numbers(text: str | None) -> list[int]:
        return [int(x) for x in (text or "").split(",") if x.strip().isdigit()]

    out: dict[str, list[tuple[int, int]]] = {}
    if not gene_table.exists():
        return out
    with open(gene_table, newline="") as fh:
        for row in csv.DictReader(fh):
            s38, s37 = numbers(row.get("GRCh38ExonStarts")), numbers(row.get("GRCh37ExonStarts"))
            e38, e37 = numbers(row.get("GRCh38ExonEnds")), numbers(row.get("GRCh37ExonEnds"))
            if len({len(s38), len(s37), len(e38), len(e37)}) != 1 or len(s38) < 2:
                continue
            out[row["Gene"]] = sorted([*zip(s38[1:], s37[1:]), *zip(e38[:-1], e37[:-1])])
    return out


def grch37_anchors(gdef: GeneDefinition) -> list[tuple[int, int]]:
    """(GRCh38 position, GRCh37 minus GRCh38 position) of a gene's loci whose GRCh37 position a PyPGx table row
    gives, in position order: the only positions interpolation starts from."""
    return sorted({(loc.position, loc.position37 - loc.position) for loc in gdef.loci
                   if loc.position37 is not None and not loc.grch37_interpolated})


def colinear_offset(anchors: list[tuple[int, int]], position: int,
                    others: list[tuple[int, int]] = ()) -> int | str:
    """The GRCh38->GRCh37 offset of `position`, lying between two anchors (see `grch37_anchors`), when the nearest
    anchor on each side has the same offset and no other coordinate pair (`others`: (GRCh38 position, offset),
    sorted) strictly between them has another: as a liftover chain maps a position inside one gap-free block.
    Otherwise why not (never beyond the outermost anchors, never across a change of offset)."""
    i = bisect.bisect_left(anchors, (position,))
    if i == 0 or i == len(anchors):
        return "outside the gene's PyPGx-mapped positions (never extrapolated)"
    (lo, off), (hi, off2) = anchors[i - 1], anchors[i]
    if off != off2:
        return f"the GRCh37 offset changes between {lo} and {hi}"
    j = bisect.bisect_right(others, (lo, float("inf")))
    for p38, o in others[j:bisect.bisect_left(others, (hi,))]:
        if o != off:
            return f"a coordinate pair at {p38} between {lo} and {hi} has another offset"
    return off


def grch37_leave_one_out(genes: dict[str, GeneDefinition]) -> tuple[int, list[tuple[str, int, int, int]]]:
    """The interpolation rule checked against PyPGx's own positions: each PyPGx-mapped position whose neighbours
    (the nearest PyPGx-mapped positions of its gene on each side) share one offset is predicted from them alone.
    Returns how many were predicted and the wrong ones as (gene, GRCh38 position, table's GRCh37, predicted)."""
    tested, wrong = 0, []
    for g, gdef in sorted(genes.items()):
        anchors = grch37_anchors(gdef)
        for i, (p, off) in enumerate(anchors):
            guess = colinear_offset(anchors[:i] + anchors[i + 1:], p)
            if isinstance(guess, str):
                continue
            tested += 1
            if guess != off:
                wrong.append((g, p, p + off, p + guess))
    return tested, wrong


def interpolate_grch37(table: Path, genes: dict[str, GeneDefinition]) -> tuple[dict[str, GeneDefinition],
                                                                                dict[str, list[tuple[int, str]]]]:
    """Definition SNVs the table gives no GRCh37 position for, placed by colinearity (`colinear_offset`) between
    the PyPGx-mapped positions of their gene; the coordinate pairs that may veto an interval are every row of the
    variant table on the chromosome and the inner exon boundaries of the gene (PyPGx's gene table). GRCh37's
    base at such a position is taken to be GRCh38's (`ref37` stays None): no source at hand gives it. Indels
    are not interpolated (their GRCh37 sequence is no more vouched for than the base, and is longer). Returns
    the genes and, per gene, the positions still unmapped with the reason."""
    rows = _table_rows(table)
    exons = _exon_pairs(table.with_name("gene-table.csv"))
    out, unmapped = {}, {}
    for g, gdef in genes.items():
        anchors = grch37_anchors(gdef)
        others = sorted({(p38, r["p37"] - p38) for (c, p38), rs in rows.items() if c == gdef.chromosome for r in rs}
                        | {(p38, p37 - p38) for p38, p37 in exons.get(g, ())})
        loci = []
        for loc in gdef.loci:
            if loc.position37 is not None:
                loci.append(loc)
                continue
            off = colinear_offset(anchors, loc.position, others) if loc.is_snv else \
                "an indel (its GRCh37 sequence is not given by any source used)"
            if isinstance(off, str):
                unmapped.setdefault(g, []).append((loc.position, off))
                loci.append(loc)
            else:
                loci.append(loc.model_copy(update={"position37": loc.position + off, "grch37_source": INTERPOLATED}))
        out[g] = GeneDefinition.model_validate(gdef.model_copy(update={"loci": tuple(loci)}).model_dump())
    return out, unmapped


def build_kb(source: Path, release: str, built: str | None = None, with_exemptions: bool = True,
             extra_phenotypes: list[Path] | None = None, pypgx: Path | None = None,
             dpwg_phenotypes: Path | None = None, guidelines: Path | None = None) -> KnowledgeBase:
    from permed.kb.guidelines import read_guidelines
    from permed.kb.load import seal
    from permed.kb.phenotypes import build_phenotypes, read_pharmcat_phenotypes

    def_dir = find_definition_dir(source)
    exemptions = {}
    ex_file = def_dir / "exemptions.json"
    if with_exemptions and ex_file.exists():
        exemptions = read_exemptions(ex_file)
    genes = {}
    for path in sorted(def_dir.glob(f"*{DEFINITION_SUFFIX}")):
        gdef = read_definition_file(path, exemptions)
        genes[gdef.gene] = gdef
    release_dir = def_dir.parent if def_dir.name.startswith("definition") else def_dir
    phenotypes = build_phenotypes(release_dir, list(extra_phenotypes or []), pypgx,
                                  {g: [a.name for a in d.alleles] for g, d in genes.items()}, release)
    dpwg = {}
    if dpwg_phenotypes is not None:
        for path in sorted(Path(dpwg_phenotypes).glob("*.json")):
            gp = read_pharmcat_phenotypes(path, "PharmCAT DPWG phenotype data (2024-05 bundle)")
            dpwg[gp.gene] = gp
    guideline_facts = read_guidelines(guidelines, pypgx) if guidelines is not None else ()
    versions = sorted({g.data_version for g in genes.values() if g.data_version})
    data_version = versions[-1] if versions else "unknown"
    extra_sources = []
    if dpwg:
        extra_sources.append(SourceInfo(
            name="DPWG phenotype assignments", release=next(iter(dpwg.values())).source,
            data_version=sorted({p.data_version for p in dpwg.values()})[-1],
            url="https://github.com/PharmGKB/PharmCAT", licence="ClinPGx/PharmGKB CC BY-SA 4.0"))
    if guideline_facts:
        extra_sources.append(SourceInfo(
            name="Guideline recommendations (CPIC, DPWG; structured facts)",
            release="PharmCAT guideline bundle 2024-05",
            data_version=sorted({g.data_version for g in guideline_facts})[-1],
            url="https://www.clinpgx.org", licence="ClinPGx/PharmGKB CC BY-SA 4.0; CPIC CC0 1.0"))
        if pypgx is not None:
            extra_sources.append(SourceInfo(name="Drug codes (RxNorm, ATC)", release="PyPGx CPIC table",
                                            data_version="unversioned copy", url="https://github.com/sbslee/pypgx",
                                            licence="MIT"))
    grch37 = read_grch37_sites(Path(pypgx) / "variant-table.csv", genes) if pypgx is not None else ()
    if grch37:
        genes = map_grch37(Path(pypgx) / "variant-table.csv", genes)[0]
        genes = interpolate_grch37(Path(pypgx) / "variant-table.csv", genes)[0]
        extra_sources.append(SourceInfo(
            name="GRCh37 coordinates of definition variants (build detection, GRCh37 input); further definition "
                 "SNVs interpolated between them by permed (same offset on both sides, no other offset between)",
            release="PyPGx variant table (positions), gene table (exon boundaries as a veto)",
            data_version="unversioned copy", url="https://github.com/sbslee/pypgx", licence="MIT"))
    kb = KnowledgeBase(
        schema=KB_SCHEMA,
        kb_version=f"{data_version}+pharmcat-{release}",
        built=built or _dt.date.today().isoformat(),
        sources=(
            SourceInfo(
                name="PharmCAT allele definitions",
                release=release,
                data_version=data_version,
                url="https://github.com/PharmGKB/PharmCAT",
                licence="CPIC CC0 1.0; ClinPGx/PharmGKB CC BY-SA 4.0",
            ),
            *sorted({SourceInfo(name="Phenotype assignments", release=p.source, data_version=p.data_version,
                                url="https://github.com/PharmGKB/PharmCAT" if "PharmCAT" in p.source
                                else "https://github.com/sbslee/pypgx",
                                licence="CPIC CC0 1.0; ClinPGx/PharmGKB CC BY-SA 4.0" if "PharmCAT" in p.source
                                else "MIT") for p in phenotypes.values()}, key=lambda s: s.release),
            *extra_sources,
        ),
        licence=KB_LICENCE,
        attribution=KB_ATTRIBUTION,
        genes=genes,
        phenotypes=phenotypes,
        phenotypes_dpwg=dpwg,
        guidelines=guideline_facts,
        grch37_sites=grch37,
    )
    return seal(kb)
