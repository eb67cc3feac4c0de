"""`permed federate --html`: one self-contained page (inline SVG, no script, no network) with, per gene and
kind, a stacked bar of the combined frequencies for each group. A suppressed cell is drawn at its lower
bound and the part of a bar that bounds leave open is grey, so nothing is drawn that was not published;
each segment's tooltip gives the exact count or the interval.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

PALETTE = ("#1b6ca8", "#e07b39", "#3a9d5d", "#c23b3b", "#8a5cb8", "#8c6d3f", "#d16ba5", "#6f6f6f", "#b5b83a",
           "#2bb0c2")
WIDTH, BAR, LABEL = 640, 18, 150


def _fmt_count(r: dict) -> str:
    if r["count"] is not None:
        return str(r["count"])
    high = r["count_high"] if r["count_high"] is not None else "?"
    return f"{r['count_low']}–{high}"


def render(result) -> str:
    blocks: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in result.rows:
        if r["frequency_low"] is None:
            continue  # undetermined values have no frequency
        blocks[(r["gene"], r["kind"])][(r["level"], r["group"])].append(r)
    parts = []
    for (gene, kind), groups in blocks.items():
        values = sorted({r["value"] for rows in groups.values() for r in rows})
        colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}
        height = 30 + BAR * 1.6 * len(groups) + 20 * ((len(values) + 3) // 4)
        svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + LABEL + 20}" height="{height:.0f}" '
               f'role="img" aria-label="{escape(gene)} {escape(kind)} frequencies by group">']
        y = 10.0
        for (level, group), rows in groups.items():
            svg.append(f'<text x="{LABEL - 6}" y="{y + BAR - 5:.1f}" text-anchor="end" font-size="12">'
                       f'{escape(group)}{" (" + escape(level) + ")" if level != "all" else ""}</text>')
            x = float(LABEL)
            for r in sorted(rows, key=lambda r: r["value"]):
                w = (r["frequency"] if r["frequency"] is not None else r["frequency_low"]) * WIDTH
                tip = (f"{r['value']}: {_fmt_count(r)} of {r['n_determined'] or '≈'+str(r['n_determined_low'])}"
                       + (f" (frequency {r['frequency']:.4f})" if r["frequency"] is not None else
                          f" (frequency {r['frequency_low']:.4f}–{r['frequency_high']:.4f})"))
                svg.append(f'<rect x="{x:.2f}" y="{y:.1f}" width="{max(w, 0):.2f}" height="{BAR}" '
                           f'fill="{colour[r["value"]]}"><title>{escape(tip)}</title></rect>')
                x += w
            if x < LABEL + WIDTH - 0.5:
                svg.append(f'<rect x="{x:.2f}" y="{y:.1f}" width="{LABEL + WIDTH - x:.2f}" height="{BAR}" '
                           'fill="#d9d9d9"><title>not determined, or within the bounds of suppressed cells'
                           '</title></rect>')
            y += BAR * 1.6
        for i, v in enumerate(values):
            lx, ly = LABEL + (i % 4) * (WIDTH / 4), y + 12 + 20 * (i // 4)
            svg.append(f'<rect x="{lx:.1f}" y="{ly - 10:.1f}" width="10" height="10" fill="{colour[v]}"/>'
                       f'<text x="{lx + 14:.1f}" y="{ly:.1f}" font-size="11">{escape(v[:40])}</text>')
        svg.append("</svg>")
        parts.append(f"<section><h2>{escape(gene)} {escape(kind)}</h2>{''.join(svg)}</section>")
    nodes = "".join(f"<tr><td>{escape(n['url'])}</td><td>{escape(n['status'])}</td><td>{escape(n['detail'])}</td>"
                    f"<td>{escape(str(n.get('nSamples', '')))}</td></tr>" for n in result.node_status())
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>permed federated query</title>"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>"
            "<h1>Federated PGx frequencies</h1>"
            f"<p>Query: {escape(str(result.query))}</p>"
            "<table><tr><th>node</th><th>status</th><th>detail</th><th>individuals</th></tr>"
            f"{nodes}</table>{''.join(parts)}</body></html>")
