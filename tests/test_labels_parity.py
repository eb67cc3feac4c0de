"""PharmCAT's labels are a contract (issue 12): unphased alleles found on both chromosomes keep PharmCAT's
label in report.json and calls.tsv; "(homozygous)" is display text of the HTML report only."""

from __future__ import annotations

import json

from helpers import cli, rec, write_vcf

HEADER = ('##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n'
          '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
# DPYD, unphased: c.85T>C (*9A) on both chromosomes, three other alleles once
DPYD = (rec("chr1", 97082391, "T", "A", "0/1") + rec("chr1", 97450058, "C", "T", "0/1")
        + rec("chr1", 97699535, "T", "C", "0/1") + rec("chr1", 97883329, "A", "G", "1/1"))
LABELS = ["c.85T>C (*9A)", "c.496A>G", "c.1905+1G>A (*2A)", "c.2846A>T"]


def test_unphased_homozygous_alleles_keep_pharmcats_labels_in_the_data(tmp_path):
    vcf = write_vcf(tmp_path / "dpyd.vcf", DPYD, header=HEADER)
    out = tmp_path / "out"
    res = cli("call", vcf, "-o", out, "--genes", "DPYD")
    assert res.returncode == 0, res.stderr
    gene = json.loads((out / "S1.report.json").read_text())["genes"]["DPYD"]
    assert gene["source_diplotypes"] == LABELS
    assert gene["haplotype_matches"].count("c.85T>C (*9A)") == 2  # what the display marks comes from here
    assert all("homozygous" not in x for x in gene["print_calls"])
    tsv = (out / "calls.tsv").read_text()
    assert "homozygous" not in tsv and "c.85T>C (*9A)" in tsv
    html = (out / "S1.report.html").read_text(encoding="utf-8")
    assert "c.85T&gt;C (*9A) (homozygous)" in html or "c.85T>C (*9A) (homozygous)" in html
    assert "c.496A&gt;G (homozygous)" not in html and "c.496A>G (homozygous)" not in html


def test_ryr1_unphased_recommendation_is_two_alleles_malignant_hyperthermia_first(tmp_path):
    """Four heterozygous unphased RYR1 variants, two MH-associated and two of uncertain function: the
    recommendation diplotype is the two MH-associated alleles (PharmCAT's lowest-function rule), while the
    source diplotypes list all four."""
    from permed.api import engine

    eng = engine()
    gdef = eng.kb.genes["RYR1"]
    ann = eng.phenotyper.annotator("RYR1")

    def single_snv(allele):
        changed = [(i, a) for i, a in allele.defined.items() if a != gdef.loci[i].ref]
        i, alt = changed[0]
        loc = gdef.loci[i]
        return (loc.position, loc.ref, alt) if len(changed) == 1 and loc.is_snv else None

    mhs, other = [], []
    for allele in gdef.alleles[1:]:
        site = single_snv(allele)
        if site:
            (mhs if "Malignant" in (ann.function(allele.name) or "") else other).append((allele.name, site))
    chosen = [mhs[0], other[0], mhs[1], other[1]]
    body = "".join(rec(gdef.chromosome, pos, ref, alt, "0/1") for _, (pos, ref, alt) in
                   sorted((c for c in chosen), key=lambda c: c[1][0]))
    header = HEADER.replace("chr1,length=248956422", "chr19,length=58617616")
    out = tmp_path / "out"
    assert cli("call", write_vcf(tmp_path / "ryr1.vcf", body, header=header), "-o", out, "--genes", "RYR1",
               "--format", "json").returncode == 0
    gene = json.loads((out / "S1.report.json").read_text())["genes"]["RYR1"]
    assert sorted(gene["source_diplotypes"]) == sorted(name for name, _ in chosen)
    assert [d["label"] for d in gene["recommendation_diplotypes"]] == [f"{mhs[0][0]}/{mhs[1][0]}"]
    assert gene["phenotypes"] == ["Malignant Hyperthermia Susceptibility"]
