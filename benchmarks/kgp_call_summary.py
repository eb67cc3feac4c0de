"""How many 1000 Genomes calls are unique, ambiguous (several diplotypes), uncallable or without data.

    python benchmarks/kgp_call_summary.py [--missing-to-ref]
"""

import argparse
from collections import Counter
from pathlib import Path

from permed.engine import Engine, Inputs
from permed.options import Options

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "1kgp-grch38"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--missing-to-ref", action="store_true")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    cs = Engine().match(Inputs.of(vcfs=sorted(args.data.glob("*.vcf.gz"))),
                        Options(missing_to_ref=args.missing_to_ref, workers=2))
    print(f"{len(cs.samples)} samples, missing_to_ref={args.missing_to_ref}")
    print(f"{'gene':8s} {'unique':>7s} {'ambiguous':>9s} {'uncallable':>10s} {'no data':>8s} {'other':>6s}")
    for g in cs.genes:
        c = Counter()
        for si in range(len(cs.samples)):
            call = cs.call(si, g)
            if call.status == "called":
                c["ambiguous" if len(call.source_diplotypes) > 1 and call.diplotypes else "unique"] += 1
            else:
                c[call.status] += 1
        other = c["not_called"]
        print(f"{g:8s} {c['unique']:7d} {c['ambiguous']:9d} {c['uncallable']:10d} {c['no_data']:8d} {other:6d}")


if __name__ == "__main__":
    main()
