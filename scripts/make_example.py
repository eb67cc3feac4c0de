"""Write the embedded example patient VCF from permed's own KB.

Every definition position is written (homozygous reference) except the patient's variants:
CYP2C19 *2/*17 and DPYD c.1905+1G>A (*2A) heterozygous.  Run: python scripts/make_example.py
"""

from pathlib import Path

from permed.genotypes.build import GRCH38_LENGTHS
from permed.kb.load import load_kb

SAMPLE = "EXAMPLE-PATIENT"
# (chromosome, position) -> GT, alleles as in the definition (REF, ALT...)
VARIANTS = {
    ("chr10", 94761900): "0/1",  # rs12248560 C>T, CYP2C19 *17
    ("chr10", 94775367): "0/1",  # rs12769205 A>G, CYP2C19 *2
    ("chr10", 94781859): "0/1",  # rs4244285 G>A, CYP2C19 *2
    ("chr10", 94842866): "1/1",  # rs3758581 A>G, shared by *2 and *17 (absent only from *38)
    ("chr1", 97450058): "0/1",  # rs3918290 C>T, DPYD c.1905+1G>A (*2A)
}
OUT = Path(__file__).resolve().parents[1] / "src" / "permed" / "examples" / "example_patient.vcf"


def main() -> None:
    kb = load_kb()
    rows = {}
    for gene, d in kb.genes.items():
        for loc in d.loci:
            rows[(d.chromosome, loc.position)] = (loc.rsid, loc.ref, loc.alts, gene)
        for x in d.exemptions.extra_loci:
            rows[(d.chromosome, x.position)] = (x.rsid, x.ref, x.alts, gene)
    missing = [k for k in VARIANTS if k not in rows]
    assert not missing, missing
    order = {f"chr{c}": i for i, c in enumerate([*map(str, range(1, 23)), "X", "Y", "M"])}
    lines = [
        "##fileformat=VCFv4.2",
        "##source=permed scripts/make_example.py (synthetic patient: CYP2C19 *2/*17, DPYD c.1905+1G>A het)",
        "##reference=GRCh38",
        *(f"##contig=<ID={c},length={GRCH38_LENGTHS[c[3:]]},assembly=GRCh38>"
          for c in sorted({c for c, _ in rows}, key=order.get)),
        '##INFO=<ID=GENE,Number=1,Type=String,Description="Gene whose allele definitions use this position">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", SAMPLE]),
    ]
    for (chrom, pos), (rsid, ref, alts, gene) in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        gt = VARIANTS.get((chrom, pos), "0/0")
        lines.append("\t".join([chrom, str(pos), rsid or ".", ref, ",".join(alts) or ".", ".", "PASS",
                                f"GENE={gene}", "GT", gt]))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(rows)} positions)")


if __name__ == "__main__":
    main()
