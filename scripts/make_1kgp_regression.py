"""Regenerate tests/data/1kgp_regression.tsv: permed's calls on a 1000 Genomes subset.

The table pins today's calls (every 10th sample; all samples' per-gene call counts) so that
a change in calling shows up as a test failure to be explained.  Run after a deliberate change:
    python scripts/make_1kgp_regression.py
"""

from collections import Counter
from pathlib import Path

from permed.engine import Engine, Inputs
from permed.options import Options

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"
GENES = ("CYP2C19", "CYP2C9", "CYP3A5", "NUDT15", "SLCO1B1", "TPMT", "UGT1A1")
OUT = ROOT / "tests" / "data" / "1kgp_regression.tsv"


def main() -> None:
    cs = Engine().match(Inputs.of(vcfs=[DATA / f"{g}.vcf.gz" for g in GENES]), Options(genes=GENES))
    lines = ["kind\tsample_or_count\tgene\tcall"]
    for g in GENES:
        counts = Counter(" OR ".join(cs.call(si, g).source_diplotypes) for si in range(len(cs.samples)))
        for call, n in sorted(counts.items()):
            lines.append(f"count\t{n}\t{g}\t{call}")
    for si in range(0, len(cs.samples), 10):
        for g in GENES:
            lines.append(f"sample\t{cs.samples[si]}\t{g}\t{' OR '.join(cs.call(si, g).source_diplotypes)}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(lines) - 1} rows)")


if __name__ == "__main__":
    main()
