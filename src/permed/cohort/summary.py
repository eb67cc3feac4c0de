"""summary.html: phenotype frequencies by population as embedded SVG charts (matplotlib), no network."""

from __future__ import annotations

import io
import re
from importlib import resources

import jinja2
import matplotlib

matplotlib.use("Agg")  # no display; charts are rendered to SVG text
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402

from permed.cohort.frequencies import undetermined  # noqa: E402

# reproducible SVG: fixed ids, no timestamp, text kept as text (small, searchable)
_RC = {"svg.hashsalt": "permed", "svg.fonttype": "none", "font.size": 9}
_GREYS = ("#bdbdbd", "#9e9e9e", "#e0e0e0", "#757575")  # undetermined values: greys, never a hue


def _level(freq: pa.Table) -> str:
    levels = set(freq.column("level").to_pylist())
    return next((lv for lv in ("superpopulation", "population") if lv in levels), "all")


def _index(freq: pa.Table) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in freq.to_pylist():
        out.setdefault((r["gene"], r["kind"], r["level"]), []).append(r)
    return out


def phenotype_chart(rows: list[dict], overall: list[dict], title: str) -> str:
    """Stacked horizontal bars: share of each phenotype per group (bars sum to 1)."""
    order = [r["value"] for r in sorted(overall, key=lambda r: (undetermined(r["value"]), -r["count"],
                                                                 r["value"]))]
    groups = sorted({r["group"] for r in rows}, reverse=True)
    share = {(r["group"], r["value"]): r["share"] for r in rows}
    size = {r["group"]: r["n_samples"] for r in rows}
    palette = plt.get_cmap("tab10").colors
    with plt.rc_context(_RC):
        # fixed margins instead of bbox_inches="tight": one layout pass instead of two
        height = 0.32 * len(groups) + 0.9
        fig, ax = plt.subplots(figsize=(8.5, height))
        fig.subplots_adjust(left=0.14, right=0.68, top=1 - 0.35 / height, bottom=0.45 / height)
        left = [0.0] * len(groups)
        ci = gi = 0
        for value in order:
            widths = [share.get((g, value), 0.0) for g in groups]
            grey = undetermined(value)
            color = _GREYS[gi % len(_GREYS)] if grey else palette[ci % len(palette)]
            gi += grey
            ci += not grey
            ax.barh([f"{g} (n={size[g]})" for g in groups], widths, left=left, color=color, label=value,
                    edgecolor="white", linewidth=0.5)
            left = [a + b for a, b in zip(left, widths)]
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of samples")
        ax.set_title(title, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF boilerplate


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
            sections.append({"gene": gene, "chart": None, "phenotypes": overall, "alleles": []})
            continue
        by_group = _rows(gene, "phenotype", level) if level != "all" else overall
        chart = phenotype_chart(by_group, overall, f"{gene} phenotype by {level}" if level != "all"
                                else f"{gene} phenotype")
        alleles = sorted(_rows(gene, "allele", "all"), key=lambda r: -r["count"])[:8]
        table = sorted(overall, key=lambda r: (undetermined(r["value"]), -r["count"], r["value"]))
        sections.append({"gene": gene, "chart": chart, "phenotypes": table, "alleles": alleles})
    return {"n_samples": n_samples, "level": level, "sections": sections, "meta": meta}


def render_summary(ctx: dict) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("permed.cohort") / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x: "" if x is None else f"{100 * x:.1f}%"
    return env.get_template("summary.html.j2").render(**ctx)
