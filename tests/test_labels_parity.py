"""PharmCAT's labels are a contract (issue 12): unphased alleles found on both chromosomes keep PharmCAT's
label in report.json and calls.tsv; "(homozygous)" is display text of the HTML report only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


PHARMCAT_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pharmcat" / "examples"


def _pharmcat_tsv(path: Path) -> tuple[str, list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    return lines[0], lines[1].split("\t"), [x.split("\t") for x in lines[2:-1]]


@pytest.mark.skipif(not PHARMCAT_EXAMPLES.exists(), reason="needs ../shared/reference/pharmcat/examples")
def test_pharmcat_tsv_on_pharmcats_example_with_its_outside_calls(tmp_path):
    """`--format pharmcat-tsv` on PharmCAT's own example VCF and outside-call file: PharmCAT 3.1's 16 columns,
    and every cell derivable from PharmCAT's rules checked against permed's report for the same patient."""
    from permed.report.pharmcat_tsv import COLUMNS

    out = tmp_path / "out"
    res = cli("call", PHARMCAT_EXAMPLES / "pharmcat.example.vcf", "--outside-calls",
              PHARMCAT_EXAMPLES / "pharmcat.example.outsideCall.tsv", "-o", out, "--format", "json,pharmcat-tsv")
    assert res.returncode == 0, res.stderr
    first, header, rows = _pharmcat_tsv(out / "Sample_1.report.tsv")
    assert first.startswith("permed ")
    assert header == list(COLUMNS) == [
        "Gene", "Source Diplotype", "Phenotype", "Activity Score", "Haplotype 1", "Haplotype 1 Function",
        "Haplotype 1 Activity Value", "Haplotype 2", "Haplotype 2 Function", "Haplotype 2 Activity Value",
        "Outside Call", "Match Score", "Missing positions", "Recommendation Lookup Diplotype",
        "Recommendation Lookup Phenotype", "Recommendation Lookup Activity Score"]
    assert all(len(r) == 16 for r in rows)
    report = json.loads((out / "Sample_1.report.json").read_text())["genes"]
    by_gene = {r[0]: dict(zip(header, r)) for r in rows}
    # genes without data are left out, every other gene has its row
    assert set(by_gene) == {g for g, x in report.items() if x["status"] != "no_data" or x["outside_call"]}
    activity_genes = {"CYP2C9", "CYP2D6", "DPYD"}
    for gene, row in by_gene.items():
        g = report[gene]
        assert row["Outside Call"] == ("yes" if g["outside_call"] else "no"), gene
        assert row["Missing positions"] == ("yes" if g.get("missing_positions") and not g["outside_call"] else "no")
        if not g["outside_call"]:
            assert row["Match Score"] == str(g["match_score"]), gene
        rec = g["recommendation_diplotypes"][0]
        assert row["Recommendation Lookup Diplotype"] == "/".join(rec["haplotypes"]), gene
        pheno = ", ".join(" " if p in ("n/a", "No Result") else p for p in rec["phenotypes"])
        assert row["Recommendation Lookup Phenotype"] == pheno, gene
        if gene not in activity_genes:
            assert row["Activity Score"] == "" and row["Recommendation Lookup Activity Score"] == "", gene
    assert {g for g, r in by_gene.items() if r["Outside Call"] == "yes"} == {"CYP2D6", "HLA-B", "MT-RNR1"}
    assert by_gene["CYP2D6"]["Source Diplotype"] == "*1/*3" and by_gene["CYP2D6"]["Activity Score"] == "1.0"
    assert by_gene["CYP2D6"]["Haplotype 2 Function"] == "No function"
    # CFTR's reference allele under its PharmCAT name
    assert by_gene["CFTR"]["Haplotype 1"] == "ivacaftor non-responsive CFTR sequence"
    # a phenotype that says nothing is PharmCAT's single space, not "n/a"
    assert by_gene["MT-RNR1"]["Phenotype"] == " "


def test_pharmcat_tsv_unphased_lowest_function_alleles_and_no_call(tmp_path):
    """Unphased DPYD alleles found on their own share one row joined by " AND " (one found on both
    chromosomes written twice), match score empty; a gene that is not called is a "no call" row."""
    # CYP2C19: an undocumented base at *2's position makes the gene uncallable
    header = HEADER + "##contig=<ID=chr10,length=133797422>\n"
    vcf = write_vcf(tmp_path / "dpyd.vcf", DPYD + rec("chr10", 94781859, "G", "C", "0/1"), header=header)
    out = tmp_path / "out"
    assert cli("call", vcf, "-o", out, "--genes", "DPYD,CYP2C19", "--format", "pharmcat-tsv").returncode == 0
    _, header_row, rows = _pharmcat_tsv(out / "S1.report.tsv")
    header = header_row
    row = dict(zip(header, next(r for r in rows if r[0] == "DPYD")))
    assert row["Source Diplotype"].split(" AND ") == [
        "c.85T>C (*9A)/c.85T>C (*9A)", "c.496A>G", "c.1905+1G>A (*2A)", "c.2846A>T"]
    assert row["Match Score"] == "" and row["Haplotype 1"] == ""
    assert row["Recommendation Lookup Diplotype"] == "c.1905+1G>A (*2A)/c.2846A>T"
    no_call = next(r for r in rows if r[0] == "CYP2C19")
    assert no_call == ["CYP2C19", "no call", "", "", "", "", "", "", "", "", "no", "", "yes", "", "", ""]
