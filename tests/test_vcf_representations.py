"""Positions are matched to the definitions whatever the VCF representation."""

from __future__ import annotations

from pathlib import Path

from cyvcf2 import VCF, Writer
from helpers import example_text, match

SAMPLE = "EXAMPLE-PATIENT"


def edited_example(tmp_path: Path, replace: dict[int, list[str] | None], name: str = "edited.vcf",
                   header_extra: str = "", chrom_prefix: bool = True) -> Path:
    """The example patient with the records at some positions replaced (None = removed)."""
    out = []
    for line in example_text().splitlines(keepends=True):
        if line.startswith("##FORMAT") and header_extra:
            out.append(header_extra)
        if not line.startswith("#"):
            pos = int(line.split("\t")[1])
            if pos in replace:
                out.extend(x if x.endswith("\n") else x + "\n" for x in (replace.pop(pos) or []))
                continue
        out.append(line)
    assert not replace, f"positions not in the example: {list(replace)}"
    text = "".join(out)
    if not chrom_prefix:
        text = "\n".join(x.removeprefix("chr").replace("##contig=<ID=chr", "##contig=<ID=")
                         for x in text.split("\n"))
    p = tmp_path / name
    p.write_text(text)
    return p


def line(chrom, pos, ref, alt, gt, filt="PASS", fmt="GT", info="."):
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", filt, info, fmt, gt])


def call(path: Path, **opts):
    cs = match([path], **opts)
    return cs, cs.sample_calls(0)


def test_contigs_without_chr_prefix(tmp_path):
    p = edited_example(tmp_path, {}, chrom_prefix=False)
    _, calls = call(p)
    assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]
    assert calls["DPYD"].source_diplotypes == ["c.1905+1G>A (*2A) (heterozygous)"]


def test_bcf_and_bgzip_inputs(tmp_path):
    src = VCF(str(edited_example(tmp_path, {})))
    outs = {}
    for mode, suffix in (("wb", "bcf"), ("wz", "vcf.gz")):
        path = tmp_path / f"example.{suffix}"
        w = Writer(str(path), src, mode=mode)
        for rec in VCF(str(tmp_path / "edited.vcf")):
            w.write_record(rec)
        w.close()
        outs[suffix] = call(path)[1]
    for calls in outs.values():
        assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]
        assert calls["DPYD"].source_diplotypes == ["c.1905+1G>A (*2A) (heterozygous)"]


def test_padded_multiallelic_deletion(tmp_path):
    """REF padded for a longer allele: TGC>TC is DPYD c.1898delC (definition TG>T)."""
    p = edited_example(tmp_path, {97450065: [line("chr1", 97450065, "TGC", "TC,TGCC", "0/1")]})
    cs, calls = call(p)
    assert "c.1898delC (*3)" in calls["DPYD"].haplotype_matches or any(
        "c.1898delC (*3)" in lab for lab in calls["DPYD"].source_diplotypes)
    ev = {e.position: e for e in calls["DPYD"].evidence}
    assert ev[97450065].call == "TG/T"
    assert ev[97450065].origin and "normalised" in ev[97450065].origin


def test_right_shifted_deletion_in_homopolymer(tmp_path):
    """The same deletion written one base to the right (GG>G) is recognised as TG>T."""
    p = edited_example(tmp_path, {97450065: [line("chr1", 97450066, "GG", "G", "0/1")]})
    _, calls = call(p)
    ev = {e.position: e for e in calls["DPYD"].evidence}
    assert ev[97450065].status == "called" and ev[97450065].call == "TG/T"


def test_repeat_insertion_written_elsewhere(tmp_path):
    """UGT1A1 TA repeat: an insertion written inside the repeat is the *28 allele."""
    p = edited_example(tmp_path, {233760233: [line("chr2", 233760235, "T", "TAT", "0/1")]})
    _, calls = call(p)
    assert calls["UGT1A1"].source_diplotypes == ["*1/*28"]


def test_mnp_covering_a_definition_snv(tmp_path):
    """An MNP record spanning rs12248560 gives the base at the definition position (*17)."""
    p = edited_example(tmp_path, {94761900: [line("chr10", 94761899, "AC", "GT", "0/1")]})
    _, calls = call(p)
    assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]


def test_split_multiallelic_records_are_combined(tmp_path):
    both_alt = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "0/1"),
                                                    line("chr10", 94781859, "G", "T", "0/1")]}, name="a.vcf")
    cs, calls = call(both_alt)
    ev = {e.position: e for e in calls["CYP2C19"].evidence}
    assert ev[94781859].call == "A/T"  # 0/1 + 0/1 of different ALTs is one het genotype A/T
    assert calls["CYP2C19"].status == "uncallable"  # T is not in any definition: no guess
    assert 94781859 in calls["CYP2C19"].undocumented_positions
    assert any("split multi-allelic" in m for m in cs.sample_vcf_warnings(0)["chr10:94781859"])

    ref_second = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "0/1"),
                                                      line("chr10", 94781859, "G", "T", "0/0")]}, name="b.vcf")
    _, calls = call(ref_second)
    assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]


def test_gvcf_reference_block(tmp_path):
    """A reference block covering definition positions reads as homozygous reference there."""
    header = '##INFO=<ID=END,Number=1,Type=Integer,Description="End of block">\n'
    drop = {p: None for p in (94762706, 94762712, 94762715, 94762755, 94762760, 94762788, 94762856)}
    p = edited_example(tmp_path, {**drop, 94761900: [line("chr10", 94761900, "C", "T,<NON_REF>", "0/1"),
                                                     line("chr10", 94762700, "A", "<NON_REF>", "0/0",
                                                          info="END=94762900")]}, header_extra=header)
    _, calls = call(p)
    assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]
    assert calls["CYP2C19"].missing_positions == []
    ev = {e.position: e for e in calls["CYP2C19"].evidence}
    assert "gVCF" in ev[94762706].origin


def test_male_hemizygous_g6pd(tmp_path):
    text_male = {154535277: [line("chrX", 154535277, "T", "C", "1")]}
    p = edited_example(tmp_path, text_male, name="male.vcf")
    # haploid X for every G6PD position of this male
    lines = []
    for x in p.read_text().splitlines(keepends=True):
        f = x.split("\t")
        if x.startswith("chrX") and f[9].strip() == "0/0":
            f[9] = "0\n"
            x = "\t".join(f)
        lines.append(x)
    p.write_text("".join(lines))
    _, calls = call(p)
    assert calls["G6PD"].source_diplotypes == ["A"]
    female = edited_example(tmp_path, {154535277: [line("chrX", 154535277, "T", "C", "0/1")]}, name="female.vcf")
    _, calls = call(female)
    assert calls["G6PD"].source_diplotypes == ["A/B (reference)"]


def test_phase_sets_only_phase_within_a_set(tmp_path):
    """PharmCAT bug #175: '|' genotypes in different PS blocks are not on a known common strand."""
    header = '##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">\n'
    one_set = edited_example(tmp_path, {
        97883329: [line("chr1", 97883329, "A", "G", "0|1:100", fmt="GT:PS")],
        97082391: [line("chr1", 97082391, "T", "A", "0|1:100", fmt="GT:PS")],
        97450058: [line("chr1", 97450058, "C", "T", "0/0")],
    }, name="one_set.vcf", header_extra=header)
    _, calls = call(one_set)
    assert calls["DPYD"].source_diplotypes == ["[c.85T>C (*9A) + c.2846A>T] (heterozygous)"]
    two_sets = edited_example(tmp_path, {
        97883329: [line("chr1", 97883329, "A", "G", "0|1:100", fmt="GT:PS")],
        97082391: [line("chr1", 97082391, "T", "A", "0|1:200", fmt="GT:PS")],
        97450058: [line("chr1", 97450058, "C", "T", "0/0")],
    }, name="two_sets.vcf", header_extra=header)
    _, calls = call(two_sets)
    labels = calls["DPYD"].source_diplotypes
    assert "[c.85T>C (*9A) + c.2846A>T] (heterozygous)" in labels and len(labels) == 2  # both arrangements


def test_filter_handling(tmp_path):
    p = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "0/1", filt="LowQual")]})
    _, calls = call(p)  # PharmCAT uses every record whatever its FILTER
    assert calls["CYP2C19"].source_diplotypes == ["*2/*17"]
    cs, calls = call(p, require_pass=True)
    assert 94781859 in calls["CYP2C19"].missing_positions
    assert any("FILTER" in m for m in cs.sample_vcf_warnings(0)["chr10:94781859"])


def test_half_calls_and_no_calls(tmp_path):
    half = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "./1")]}, name="half.vcf")
    cs, calls = call(half)
    assert calls["CYP2C19"].status == "uncallable"  # one allele unknown: no call rather than a guess
    assert any("1 genotype found" in m for m in cs.sample_vcf_warnings(0)["chr10:94781859"])
    nocall = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "./.")]}, name="nc.vcf")
    cs, calls = call(nocall)
    assert 94781859 in calls["CYP2C19"].missing_positions
    ref_half = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "A", "./0")]}, name="rh.vcf")
    _, calls = call(ref_half)
    assert 94781859 in calls["CYP2C19"].missing_positions  # "./0" is treated like a missing position


def test_undocumented_alt_in_toxicity_gene_reads_as_reference(tmp_path):
    """TPMT: an ALT the definitions do not know is read as reference (PharmCAT), with a warning."""
    p = edited_example(tmp_path, {18130694: [line("chr6", 18130694, "T", "G", "0/1")]})
    cs, calls = call(p)
    assert calls["TPMT"].source_diplotypes == ["*1/*1"]
    assert 18130694 in calls["TPMT"].undocumented_positions
    assert any("replaced with reference" in m for m in cs.sample_vcf_warnings(0)["chr6:18130694"])


def test_an_undocumented_longer_allele_is_not_read_as_a_shorter_one(tmp_path):
    """CYP2C19 rs4244285 is G>A (*2); a G/AT genotype there (an insertion no definition knows) must make
    the gene uncallable. It was once cut to the definitions' width and read as A: a silent *1/*2."""
    p = edited_example(tmp_path, {94781859: [line("chr10", 94781859, "G", "AT", "0/1")]})
    _, calls = call(p)
    assert calls["CYP2C19"].status == "uncallable" and calls["CYP2C19"].source_diplotypes == ["Unknown/Unknown"]
    assert 94781859 in calls["CYP2C19"].undocumented_positions
