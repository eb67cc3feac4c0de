"""summary.html: phenotype frequencies by population as inline SVG charts, self-contained (no network).

A chart is a stacked horizontal bar per group (each bar sums to 1), drawn from a Jinja template
(templates/chart.svg.j2) with its geometry computed here: fast, deterministic to the byte, text kept
as text, and each segment's exact share in its tooltip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jinja2
import pyarrow as pa

from permed.biobank.frequencies import undetermined

# One colour per phenotype, the same in every gene's chart (a poor metabolizer is always red): the usual
# CPIC terms fixed by meaning (less function, warmer), any other term a stable colour of its own.
PHENOTYPE_COLORS = {
    "Poor Metabolizer": "#d62728", "Likely Poor Metabolizer": "#ff9896",
    "Intermediate Metabolizer": "#ff7f0e", "Likely Intermediate Metabolizer": "#ffbb78",
    "Normal Metabolizer": "#2ca02c", "Rapid Metabolizer": "#17becf", "Ultrarapid Metabolizer": "#1f77b4",
    "Poor Function": "#d62728", "Decreased Function": "#ff7f0e", "Possible Decreased Function": "#ffbb78",
    "Normal Function": "#2ca02c", "Increased Function": "#1f77b4",
    "Deficient": "#d62728", "Variable": "#ff7f0e", "Normal": "#2ca02c",
    "Malignant Hyperthermia Susceptibility": "#d62728", "Uncertain Susceptibility": "#ffbb78",
}
# for other terms (e.g. HLA, VKORC1, CFTR wording): hues not used above
_OTHER = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
_GREYS = ("#bdbdbd", "#9e9e9e", "#e0e0e0", "#757575")  # undetermined values: greys, never a hue
UNDETERMINED_GREYS = {"(not determined)": "#e0e0e0", "Indeterminate": "#bdbdbd", "n/a": "#9e9e9e",
                      "No Result": "#757575"}

# why a gene has no determined phenotype for anyone, from its calls' dominant undetermined value
WHY_UNDETERMINED = {
    "(no_data)": "the input has no records at this gene's positions",
    "(not_called)": "not called from VCF by default (CYP2D6: its copy-number changes are invisible in a VCF; "
                    "give an outside call)",
    "(uncallable)": "the genotypes found fit no defined diplotype",
    "(ambiguous)": "the calls are ambiguous (several diplotypes fit; with variant-only VCFs consider "
                   "--missing-to-ref)",
}


def phenotype_color(value: str) -> str:
    """The colour of a phenotype in every chart; values that determine nothing are greys, never a hue."""
    fixed = PHENOTYPE_COLORS.get(value) or UNDETERMINED_GREYS.get(value)
    if fixed:
        return fixed
    palette = _GREYS if undetermined(value) else _OTHER
    return palette[int(hashlib.sha1(value.encode()).hexdigest(), 16) % len(palette)]

# chart geometry, in SVG user units (px at 100%)
LABEL_W, PLOT_W, LEGEND_W = 150, 480, 240
TOP, BAR_H, BAR_GAP, AXIS_H, LEGEND_ROW = 30, 20, 8, 34, 18


def _level(freq: pa.Table) -> str:
    levels = set(freq.column("level").to_pylist())
    return next((lv for lv in ("superpopulation", "population") if lv in levels), "all")


def _index(freq: pa.Table) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in freq.to_pylist():
        out.setdefault((r["gene"], r["kind"], r["level"]), []).append(r)
    return out


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    color: str
    tip: str


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    segments: tuple[Segment, ...]


def phenotype_chart(rows: list[dict], overall: list[dict], title: str) -> str:
    """Stacked horizontal bars: share of each phenotype per group (bars sum to 1), as SVG markup."""
    order = [r["value"] for r in sorted(overall, key=lambda r: (undetermined(r["value"]), -r["count"],
                                                                 r["value"]))]
    colors = {value: phenotype_color(value) for value in order}
    groups = sorted({r["group"] for r in rows})
    share = {(r["group"], r["value"]): r for r in rows}
    size = {r["group"]: r["n_samples"] for r in rows}
    bars = []
    for i, g in enumerate(groups):
        left, segments = 0.0, []
        for value in order:
            r = share.get((g, value))
            if r is None or not r["share"]:
                continue
            segments.append(Segment(round(LABEL_W + left * PLOT_W, 2), round(r["share"] * PLOT_W, 2), colors[value],
                                    f"{g}: {value} {100 * r['share']:.1f}% ({r['count']} of {size[g]})"))
            left += r["share"]
        bars.append(Bar(f"{g} (n={size[g]})", TOP + i * (BAR_H + BAR_GAP), tuple(segments)))
    plot_bottom = TOP + len(groups) * (BAR_H + BAR_GAP)
    height = max(plot_bottom + AXIS_H, TOP + len(order) * LEGEND_ROW + 8)
    return _chart_template().render(
        title=title, bars=bars, legend=[(v, colors[v]) for v in order], width=LABEL_W + PLOT_W + LEGEND_W,
        height=height, label_w=LABEL_W, plot_w=PLOT_W, bar_h=BAR_H, plot_bottom=plot_bottom,
        ticks=[(round(LABEL_W + t / 5 * PLOT_W, 2), f"{20 * t}%") for t in range(6)], legend_row=LEGEND_ROW,
        top=TOP)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("permed.biobank") / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2", "svg"], default_for_string=True, default=True),
        trim_blocks=True, lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def _chart_template() -> jinja2.Template:
    return _environment().get_template("chart.svg.j2")


def summary_context(freq: pa.Table, n_samples: int, genes: list[str], meta: dict) -> dict:
    level = _level(freq)
    index = _index(freq)

    def _rows(gene: str, kind: str, lv: str) -> list[dict]:
        return index.get((gene, kind, lv), [])

    sections = []
    for gene in genes:
        overall = _rows(gene, "phenotype", "all")
        determined = [r for r in overall if not undetermined(r["value"])]
        if not determined:
            calls = sorted(_rows(gene, "diplotype", "all"), key=lambda r: -r["count"])
            why = WHY_UNDETERMINED.get(calls[0]["value"], "no phenotype could be determined") if calls else \
                WHY_UNDETERMINED["(no_data)"]
            sections.append({"gene": gene, "chart": None, "phenotypes": overall, "alleles": [],
                             "why": f"Not determined for any sample: {why}."})
            continue
        by_group = _rows(gene, "phenotype", level) if level != "all" else overall
        chart = phenotype_chart(by_group, overall, f"{gene} phenotype by {level}" if level != "all"
                                else f"{gene} phenotype")
        alleles = sorted(_rows(gene, "allele", "all"), key=lambda r: -r["count"])[:8]
        table = sorted(overall, key=lambda r: (undetermined(r["value"]), -r["count"], r["value"]))
        sections.append({"gene": gene, "chart": chart, "phenotypes": table, "alleles": alleles})
    return {"n_samples": n_samples, "level": level, "sections": sections, "meta": meta}


def render_summary(ctx: dict) -> str:
    env = _environment()
    env.filters["pct"] = lambda x: "" if x is None else f"{100 * x:.1f}%"
    return env.get_template("summary.html.j2").render(**ctx)
