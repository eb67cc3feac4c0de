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
