"""Combining nodes' aggregates: sums of counts, with suppressed cells kept as bounds (never guessed).

A node's "<k" cell holds 1..k-1 individuals (0..k-1 on the noisy scale of a differentially private node);
a complementary cell holds k or more, at most its group's total less what else is known of the group. A
combined cell is exact when every node gave its count, and otherwise an interval [count_low, count_high];
frequencies get the interval that the count's and the denominator's bounds allow. Noisy answers add their
noise: the combined standard deviation is stated per cell (noise_sd), never hidden in the count.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from permed.federation.client import NodeAnswer

ROW_FIELDS = ("gene", "kind", "value", "level", "group", "count", "count_low", "count_high", "n_samples",
              "n_samples_low", "n_samples_high", "n_determined", "n_determined_low", "n_determined_high",
              "frequency", "frequency_low", "frequency_high", "share", "noise_sd", "nodes")


@dataclass
class Bound:
    low: float = 0
    high: float = 0
    exact: bool = True
    variance: float = 0.0
    nodes: int = 0

    def add(self, low, high, exact: bool, variance: float = 0.0) -> None:
        self.low += low
        self.high += high
        self.exact &= exact
        self.variance += variance
        self.nodes += 1

    @property
    def value(self) -> int | None:
        return int(self.low) if self.exact else None


@dataclass
class FederatedResult:
    query: dict
    nodes: list[NodeAnswer]
    rows: list[dict] = field(default_factory=list)

    def node_status(self) -> list[dict]:
        return [n.summary() for n in self.nodes]

    def to_json(self) -> str:
        return json.dumps({"query": self.query, "nodes": self.node_status(), "rows": self.rows}, indent=1,
                          ensure_ascii=False)

    def to_arrow(self):
        import pyarrow as pa

        ints = {"count", "count_low", "count_high", "n_samples", "n_samples_low", "n_samples_high", "n_determined",
                "n_determined_low", "n_determined_high", "nodes"}
        floats = {"frequency", "frequency_low", "frequency_high", "share", "noise_sd"}
        schema = pa.schema([(f, pa.int64() if f in ints else pa.float64() if f in floats else pa.string())
                            for f in ROW_FIELDS], metadata={
            b"permed.schema": b"permed.federated/1", b"permed.query": json.dumps(self.query).encode(),
            b"permed.nodes": json.dumps(self.node_status()).encode()})
        return pa.table({f: [r.get(f) for r in self.rows] for f in ROW_FIELDS}, schema=schema)

    def write_parquet(self, path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), path)

    def write_html(self, path) -> None:
        from pathlib import Path

        from permed.federation.chart import render

        Path(path).write_text(render(self), encoding="utf-8")


def _noise_var(privacy: dict) -> float:
    scale = privacy.get("scale") or 0.0
    if privacy.get("mechanism") == "laplace":
        return 2.0 * scale * scale  # (discrete) Laplace: variance about 2 b^2
    if privacy.get("mechanism") == "gaussian":
        return scale * scale
    return 0.0


def _interval(count, k: int, dp: bool, upper: float) -> tuple[float, float, bool]:
    if isinstance(count, int):
        return count, count, True
    if dp or count["suppressed"] == "<k":
        return (0 if dp else 1), k - 1, False
    return k, max(upper, k), False  # complementary: k or more, within what its group allows


def combine(answers: list[NodeAnswer], query: dict) -> FederatedResult:
    cells: dict[tuple, Bound] = defaultdict(Bound)
    sizes: dict[tuple, Bound] = defaultdict(Bound)
    determined: dict[tuple, Bound] = defaultdict(Bound)
    for a in answers:
        agg = a.aggregate
        if agg is None:
            continue
        k, dp = agg["k"], agg["privacy"]["mechanism"] != "none"
        var = _noise_var(agg["privacy"])
        n_all = agg["nSamples"] if isinstance(agg["nSamples"], int) else None
        group_n = {(g["level"], g["group"]): g["n"] for g in agg["groups"]}
        totals = {(t["gene"], t["kind"], t["level"], t["group"]): t["nDetermined"] for t in agg["totals"]}
        cap = float(n_all) if n_all is not None and not dp else math.inf
        for (level, group), n in group_n.items():
            sizes[(level, group)].add(*_interval(n, k, dp, cap), var)
        # per row (gene, kind, level, group): what is known of its total bounds its complementary cells
        rows: dict[tuple, list[dict]] = defaultdict(list)
        for c in agg["cells"]:
            rows[(c["gene"], c["kind"], c["level"], c["group"])].append(c)
        for (gene, kind, level, group), row in rows.items():
            total = totals.get((gene, kind, level, group)) if kind == "allele" else group_n.get((level, group))
            if not isinstance(total, int):
                total = (2 if kind == "allele" else 1) * cap
            known = sum(c["count"] for c in row if isinstance(c["count"], int))
            hidden = [c for c in row if not isinstance(c["count"], int)]
            floor = sum(1 if c["count"]["suppressed"] == "<k" else k for c in hidden)
            for c in row:
                lo, hi, exact = _interval(c["count"], k, dp, 0)
                if not exact and not dp and c["count"]["suppressed"] == "complementary":
                    hi = max(k, total - known - (floor - k))
                cells[(gene, kind, c["value"], level, group)].add(lo, hi, exact, var)
        for key, t in totals.items():
            determined[key].add(*_interval(t, k, dp, 2 * cap if key[1] == "allele" else cap), var)
    out = []
    for (gene, kind, value, level, group), b in sorted(cells.items(), key=_order):
        n = sizes.get((level, group), Bound(exact=False))
        d = determined.get((gene, kind, level, group), Bound(exact=False))
        undetermined = value.startswith("(") or value in ("Indeterminate", "n/a", "No Result")
        row = {"gene": gene, "kind": kind, "value": value, "level": level, "group": group,
               "count": b.value, "count_low": int(b.low), "count_high": _int(b.high),
               "n_samples": n.value, "n_samples_low": int(n.low), "n_samples_high": _int(n.high),
               "n_determined": d.value, "n_determined_low": int(d.low), "n_determined_high": _int(d.high),
               "noise_sd": math.sqrt(b.variance) if b.variance else None, "nodes": b.nodes}
        if undetermined:
            row["frequency"] = row["frequency_low"] = row["frequency_high"] = None
        elif b.exact and d.exact and d.low:
            row["frequency"] = row["frequency_low"] = row["frequency_high"] = b.low / d.low
        else:
            row["frequency"] = None
            row["frequency_low"] = min(1.0, b.low / d.high) if d.high and math.isfinite(d.high) else 0.0
            row["frequency_high"] = min(1.0, b.high / d.low) if d.low else 1.0
        row["share"] = (b.low / n.low) if kind != "allele" and b.exact and n.exact and n.low else None
        out.append(row)
    return FederatedResult(query, answers, out)


def _int(x: float) -> int | None:
    return int(x) if math.isfinite(x) else None


def _order(item):
    (gene, kind, value, level, group), b = item
    return (gene, kind, {"all": 0, "superpopulation": 1, "population": 2}.get(level, 3), group, -b.low, value)
