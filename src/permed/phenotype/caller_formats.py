"""CYP2D6 outside calls in the output formats of copy-number-aware callers: Cyrius, Aldy, StellarPGx, PyPGx.

CYP2D6 deletions, duplications and CYP2D6/CYP2D7 hybrids are invisible in a VCF; these tools call them
from BAM/CRAM reads. Their files name samples, so each sample gets its own row's call. A call the tool
marks uncertain, or one whose alleles or copy numbers cannot be mapped to the knowledge base's allele
names and activity values, becomes "not called" with the reason: nothing is guessed.

Layouts (as each tool documents them; docs/formats.md has the details):
* Cyrius: TSV `Sample, Genotype, Filter` (README "Interpreting the output").
* Aldy: the `.aldy` decomposition file, `Sample Gene SolutionID Major Minor Copy Allele ...`, several rows
  per solution; `#` comment lines.
* StellarPGx: one `<sample>_2d6.alleles` report per sample, values under `Result:`, `Activity score:`...
* PyPGx: `data.tsv` of a `SampleTable[Results]` archive (`results.zip`, read directly too): an unnamed
  sample column, then `Genotype, Phenotype, Haplotype1, Haplotype2, AlternativePhase, VariantData, CNV`.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from permed.errors import ConfigurationError, OutsideCallsError
from permed.phenotype.annotate import TANDEM_JOINER, GeneAnnotator, normalize_activity
from permed.phenotype.model import NA, unspecified
from permed.phenotype.outside_calls import OutsideCall, OutsideCallError, cyp2d6_copy_number

GENE = "CYP2D6"
PHARMCAT = "pharmcat"
CALLER_FORMATS = ("cyrius", "aldy", "stellarpgx", "pypgx")
FORMATS = (PHARMCAT, *CALLER_FORMATS)
TOOL_NAMES = {"cyrius": "Cyrius", "aldy": "Aldy", "stellarpgx": "StellarPGx", "pypgx": "PyPGx"}
ZIP_MAGIC = b"PK\x03\x04"

# CYP2D6/CYP2D7 hybrid genes (PharmVar's structural-variant alleles): CPIC and PharmCAT write a tandem
# with the hybrid first (*36+*10, *68+*4, *13+*2), whichever order the caller printed
HYBRIDS = frozenset({"*13", "*36", "*61", "*63", "*68", "*78", "*79", "*80", "*83"})

# one gene copy: star number, optional sub-allele (".001"), legacy letter suffix ("*4A", Aldy's "4AW"),
# Aldy's own sub-allele tag (".ALDY", ".ALDY_2") and copy number ("x2", "xN")
_COPY = re.compile(r"\*(?P<num>\d+)(?P<sub>\.\d+)?(?P<letters>[A-Z]{1,3})?(?P<aldy>\.ALDY(?:_\d+)?)?"
                   r"(?:[xX](?P<copies>\d+|[Nn]))?")
_CYRIUS_FILTERS = {
    "More_than_one_possible_genotype": "Cyrius cannot tell the possible genotypes apart",
    "Not_assigned_to_haplotypes": "Cyrius called the star alleles but could not assign them to the two haplotypes",
    "LowQ_high_CN": "Cyrius marks the call low quality (high copy number)",
}


class _NotCalled(Exception):
    """A row whose call is not used: the message says why."""


@dataclass
class Row:
    """One sample's call as the tool wrote it; `reason` set when the tool itself gives no usable call."""

    sample: str
    where: str
    genotype: str | None
    reason: str | None = None


@dataclass
class CallerFile:
    """One caller file read: each sample's CYP2D6 call (or why it is not called), in file order."""

    name: str
    fmt: str
    calls: dict[str, OutsideCall] = field(default_factory=dict)
    errors: dict[str, OutsideCallError] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_format(fmt: str | None) -> str | None:
    """The format name, lower-cased; ConfigurationError for an unknown one."""
    if fmt is None:
        return None
    f = fmt.strip().lower()
    if f not in FORMATS:
        raise ConfigurationError(f"--outside-calls-format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return f


def detect_format(data: bytes, text: str | None) -> str:
    """The format a file's content is in; PharmCAT's TSV when nothing else matches."""
    if data[:4] == ZIP_MAGIC:
        return "pypgx"
    if text is None:
        return PHARMCAT
    if "with StellarPGx" in text or ("\nResult:" in text and "Metaboliser status:" in text):
        return "stellarpgx"
    for line in [ln for ln in text.splitlines() if ln.strip()][:5]:
        fields = [f.strip() for f in line.lstrip("#").split("\t")]
        if fields[:3] == ["Sample", "Genotype", "Filter"]:
            return "cyrius"
        if fields[:3] == ["Sample", "Gene", "SolutionID"]:
            return "aldy"
        if {"Genotype", "Phenotype", "Haplotype1", "Haplotype2"} <= set(fields):
            return "pypgx"
        if not line.startswith("#"):
            break
    return PHARMCAT


def read_caller_file(name: str, fmt: str, data: bytes, text: str | None, ann: GeneAnnotator) -> CallerFile:
    """Parse one file in a caller's format (`text` is None for a zip archive). Rows without a usable call
    are kept as errors of their sample; a file that cannot be read as that format raises OutsideCallsError."""
    tool = TOOL_NAMES[fmt]
    if fmt == "pypgx" and data[:4] == ZIP_MAGIC:
        text, name = _pypgx_archive(name, data)
    if text is None:
        raise OutsideCallsError(f"{name}: not in {tool}'s format (binary content)")
    lines = text.splitlines()
    rows = {"cyrius": _cyrius, "aldy": _aldy, "stellarpgx": _stellarpgx, "pypgx": _pypgx}[fmt](name, lines)
    out = CallerFile(name=name, fmt=fmt)
    memo: dict[str, tuple[list[str], str | None, list[str]] | str] = {}
    seen: dict[str, str] = {}
    for row, extra in rows:
        if extra:
            out.warnings.append(extra)
        if row is None:
            continue
        if row.sample in seen:
            # two rows for one sample: which one is meant is unknown, so neither is used
            out.calls.pop(row.sample, None)
            out.errors[row.sample] = OutsideCallError(
                GENE, row.where, f"sample {row.sample!r} has another row at {seen[row.sample]}; neither is used")
            continue
        seen[row.sample] = row.where
        out.samples.append(row.sample)
        reason = row.reason
        if reason is None:
            key = row.genotype or ""
            if key not in memo:
                try:
                    memo[key] = resolve_genotype(key, tool, ann)
                except _NotCalled as exc:
                    memo[key] = str(exc)
            got = memo[key]
            if isinstance(got, str):
                reason = got
            else:
                names, score, notes = got
                out.calls[row.sample] = OutsideCall(
                    gene=GENE, where=row.where, diplotype="/".join(names), alleles=list(names),
                    activity_score=score, warnings=list(notes))
                continue
        out.errors[row.sample] = OutsideCallError(GENE, row.where, reason)
    return out


# ---- genotype notation -> the knowledge base's allele names ----------------------------------------------
def resolve_genotype(genotype: str, tool: str, ann: GeneAnnotator) -> tuple[list[str], str | None, list[str]]:
    """`*1/*2x2`, `*10+*36/*4`, `*1/*4+*4` -> (allele names as PharmCAT writes them, an activity score
    when the knowledge base has none for the diplotype but CPIC's copy-number rule gives one, notes)."""
    g = genotype.strip()
    if not g or g.lower() in ("none", "na", "n/a", "indeterminate", "."):
        raise _NotCalled(f"{tool} made no call ({g or 'empty genotype'})")
    if ";" in g or " or " in g.lower():
        raise _NotCalled(f"{tool} reports several possible genotypes ({g}); permed does not choose between them")
    haps = g.split("/")
    if len(haps) != 2:
        raise _NotCalled(f"expected two haplotypes separated by '/' in {g!r}")
    notes: list[str] = []
    parts = [_copies(h, g, tool, notes) for h in haps]
    table = ann.table
    if table is None:
        raise _NotCalled("the knowledge base has no CYP2D6 activity values")
    for hap in parts:
        for star, n in hap:
            if star not in table.activity and not ann.is_known_allele(star):
                raise _NotCalled(f"CYP2D6 {star} (in {g!r}) is not in the knowledge base")
            if n is None and _value(table.activity.get(star)) != 0:
                raise _NotCalled(f"{tool} does not give the number of {star} copies in {g!r}")
    names = [TANDEM_JOINER.join(_copy_name(s, n) for s, n in hap) for hap in parts]
    lookup = [cyp2d6_copy_number(a, ann) for a in names]
    if not unspecified(ann.diplotype(lookup).activity_score):
        return names, None, notes
    # the table has no entry (e.g. *10x3): CPIC's rule, activity value times copy number, summed
    total = 0.0
    for hap in parts:
        for star, n in hap:
            tabled = _value(table.activity.get(f"{star}x{n}")) if n and n > 1 else None
            v = tabled if tabled is not None else _value(table.activity.get(star))
            if v is None:
                return names, None, notes  # an allele without an activity value: the KB says Indeterminate
            total += v if tabled is not None else v * (n or 0)
    score = normalize_activity(f"{round(total, 4):g}")
    if ann.diplotype(lookup, activity_score=score).phenotypes in ([], [NA]):
        raise _NotCalled(f"activity score {score} of {g!r} has no phenotype in the knowledge base")
    notes.append(f"activity score {score}: CPIC's rule for copies the table does not list (activity value times "
                 "copy number, summed)")
    return names, score, notes


def _copies(hap: str, genotype: str, tool: str, notes: list[str]) -> list[tuple[str, int | None]]:
    """One haplotype's gene copies as (star allele, copies); None copies = the tool wrote xN."""
    found: dict[str, int | None] = {}
    for raw in hap.split("+"):
        p = raw.strip()
        if p.upper().startswith(GENE):
            p = p[len(GENE):].strip()
        if p.lower().endswith("-like"):
            raise _NotCalled(f"{tool} marks {p!r} as carrying a novel variant that may change its function")
        if re.fullmatch(r"rs\d+", p):
            raise _NotCalled(f"{tool} adds variant {p} to {hap.strip()!r}; its effect on the allele is unknown")
        m = _COPY.fullmatch(p)
        if not m:
            raise _NotCalled(f"{p or 'an empty part'!r} (in {genotype!r}) is not a CYP2D6 star allele")
        star = "*" + m["num"]
        copies = m["copies"]
        n = None if copies in ("N", "n") else int(copies) if copies else 1
        if n == 0:
            raise _NotCalled(f"zero copies in {p!r}")
        if m["sub"] or m["letters"] or m["aldy"]:
            notes.append(f"{p!r} read as {_copy_name(star, n)} (sub-alleles have the function of their core allele)")
        if star in found:  # Aldy writes a duplication as repeated copies: *2+*2 is *2x2
            prev = found[star]
            found[star] = None if prev is None or n is None else prev + n
        else:
            found[star] = n
    return sorted(found.items(), key=lambda kv: kv[0] not in HYBRIDS)


def _copy_name(star: str, n: int | None) -> str:
    return star if n == 1 else f"{star}x{'N' if n is None else n}"


def _value(v: str | None) -> float | None:
    if unspecified(v) or v.startswith(("≥", ">")):
        return None
    try:
        return float(v)
    except ValueError:
        return None


# ---- the tools' layouts -----------------------------------------------------------------------------
def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.rstrip("\r\n").split("\t")]


def _header(name: str, lines: list[str], tool: str, want: tuple[str, ...], strip_hash: bool = False):
    """(index of the header line, column -> position); OutsideCallsError naming the line when absent."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        fields = _fields(line.lstrip("#") if strip_hash else line)
        if set(want) <= set(fields):
            return i, {f: j for j, f in enumerate(fields) if f}
        if strip_hash and line.startswith("#"):
            continue
        raise OutsideCallsError(f"{name}:{i + 1}: not in {tool}'s format: expected a header with "
                                f"{', '.join(want)}, found {line.strip()[:60]!r}")
    raise OutsideCallsError(f"{name}: not in {tool}'s format: no header with {', '.join(want)}")


def _cells(name: str, n: int, line: str, cols: dict[str, int], want: tuple[str, ...], tool: str) -> list[str]:
    fields = _fields(line)
    need = max(cols[c] for c in want) + 1
    if len(fields) < need:
        raise OutsideCallsError(f"{name}:{n}: expected at least {need} TAB-separated fields in this {tool} row, "
                                f"found {len(fields)}")
    return fields


def _sample(name: str, n: int, value: str) -> str:
    if not value:
        raise OutsideCallsError(f"{name}:{n}: the row names no sample (first column is empty)")
    return value


def _cyrius(name: str, lines: list[str]):
    want = ("Sample", "Genotype", "Filter")
    start, cols = _header(name, lines, "Cyrius", want)
    for i in range(start + 1, len(lines)):
        if not lines[i].strip():
            continue
        f = _cells(name, i + 1, lines[i], cols, want, "Cyrius")
        sample = _sample(name, i + 1, f[cols["Sample"]])
        genotype, flt = f[cols["Genotype"]], f[cols["Filter"]]
        where = f"{name}:{i + 1}"
        if genotype in ("", "None"):
            yield Row(sample, where, None, f"Cyrius made no call (Genotype {genotype or 'empty'}, Filter {flt})"), None
        elif flt != "PASS":
            why = _CYRIUS_FILTERS.get(flt, f"Cyrius filter {flt!r} is not PASS")
            yield Row(sample, where, None, f"{why}: {genotype} (Filter {flt})"), None
        else:
            yield Row(sample, where, genotype), None


def _aldy(name: str, lines: list[str]):
    want = ("Sample", "Gene", "SolutionID", "Major")
    start, cols = _header(name, lines, "Aldy", want, strip_hash=True)
    solutions: dict[str, dict[str, str]] = {}  # sample -> solution id -> major diplotype
    first: dict[str, int] = {}
    other: set[str] = set()
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            continue
        f = _cells(name, i + 1, line, cols, want, "Aldy")
        sample = _sample(name, i + 1, f[cols["Sample"]])
        gene = f[cols["Gene"]].upper()
        if gene != GENE:
            other.add(gene)
            continue
        first.setdefault(sample, i + 1)
        solutions.setdefault(sample, {}).setdefault(f[cols["SolutionID"]], f[cols["Major"]])
    if other:
        yield None, f"{name}: rows for {', '.join(sorted(other))} ignored (only CYP2D6 is read from Aldy files)"
    for sample, sols in solutions.items():
        where = f"{name}:{first[sample]}"
        majors = list(dict.fromkeys(sols.values()))
        if len(majors) > 1:
            # Aldy lists only equally good solutions by default: there is no best one to take
            yield Row(sample, where, None, f"Aldy reports {len(majors)} equally good solutions "
                      f"({'; '.join(majors)}); permed does not choose between them"), None
        else:
            yield Row(sample, where, majors[0]), None


def _stellarpgx(name: str, lines: list[str]):
    sections: dict[str, tuple[int, str]] = {}
    banners = [i for i, ln in enumerate(lines) if "Star Allele Calling with StellarPGx" in ln]
    if len(banners) > 1:
        raise OutsideCallsError(f"{name}:{banners[1] + 1}: a second StellarPGx result; StellarPGx writes one file "
                                "per sample: give each file to --outside-calls")
    if banners and GENE not in lines[banners[0]]:
        raise OutsideCallsError(f"{name}:{banners[0] + 1}: a StellarPGx result for another gene "
                                f"({lines[banners[0]].split()[0]}); only CYP2D6 is read")
    for i, line in enumerate(lines):
        head = line.strip()
        if head.endswith(":") and head[:-1] in ("Result", "Activity score", "Metaboliser status"):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            sections[head[:-1]] = (j + 1, lines[j].strip() if j < len(lines) else "")
    if "Result" not in sections:
        raise OutsideCallsError(f"{name}: not in StellarPGx's format: no 'Result:' line")
    n, result = sections["Result"]
    sample = _stellar_sample(name)
    where = f"{name}:{n}"
    call, _, remark = result.partition("\t")
    if remark.strip():
        yield Row(sample, where, None, f"StellarPGx: {remark.strip()} ({call.strip()})"), None
    elif not call.startswith("*"):
        yield Row(sample, where, None, f"StellarPGx: {call.strip() or 'empty result'}"), None
    else:
        yield Row(sample, where, call.strip()), None


def _stellar_sample(name: str) -> str:
    """StellarPGx names its report `<sample>_2d6.alleles`; the sample is the part before the gene."""
    base = Path(name).name
    base = base[: -len(".alleles")] if base.endswith(".alleles") else base.split(".")[0]
    return re.sub(r"_(cyp)?2d6$", "", base, flags=re.IGNORECASE) or base


def _pypgx(name: str, lines: list[str]):
    want = ("Genotype", "Phenotype", "Haplotype1", "Haplotype2")
    start, cols = _header(name, lines, "PyPGx", want)
    for i in range(start + 1, len(lines)):
        if not lines[i].strip():
            continue
        f = _cells(name, i + 1, lines[i], cols, want, "PyPGx")
        sample = _sample(name, i + 1, f[0])
        genotype = f[cols["Genotype"]]
        cnv = f[cols["CNV"]] if "CNV" in cols and cols["CNV"] < len(f) else ""
        where = f"{name}:{i + 1}"
        if genotype in ("", "Indeterminate"):
            yield Row(sample, where, None, f"PyPGx: genotype {genotype or 'empty'}" +
                      (f" (CNV {cnv})" if cnv else "")), None
        else:
            yield Row(sample, where, genotype), None


def _pypgx_archive(name: str, data: bytes) -> tuple[str, str]:
    """The data.tsv of a PyPGx archive (results.zip), checked to hold CYP2D6 results."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = {Path(n).name: n for n in zf.namelist()}
        if "data.tsv" not in members:
            raise OutsideCallsError(f"{name}: not a PyPGx archive (no data.tsv inside)")
        meta = {}
        if "metadata.txt" in members:
            for line in zf.read(members["metadata.txt"]).decode("utf-8").splitlines():
                key, _, value = line.partition("=")
                meta[key.strip()] = value.strip()
        text = zf.read(members["data.tsv"]).decode("utf-8-sig")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
        raise OutsideCallsError(f"{name}: cannot read the PyPGx archive ({exc})") from None
    kind = meta.get("SemanticType")
    if kind and kind != "SampleTable[Results]":
        raise OutsideCallsError(f"{name}: a PyPGx {kind} archive; give the pipeline's results.zip")
    if meta.get("Gene") and meta["Gene"] != GENE:
        raise OutsideCallsError(f"{name}: PyPGx results for {meta['Gene']}; only CYP2D6 is read")
    return text, f"{name}!{members['data.tsv']}"
