"""Jobs read an indexed copy of each upload (windows around definition positions, not the whole
genome): every upload form gets one, its calls equal a full read of the upload, and a file that
cannot be indexed is read as it is, leaving nothing behind."""

from __future__ import annotations

import gzip

import pytest
from cyvcf2 import VCF, Writer
from helpers import match, two_patient_text

from permed.genotypes.files import has_index, is_bgzf
from permed.genotypes.vcf_reader import VcfReader
from permed.kb.load import load_kb
from permed.service.indexing import queryable

KB = load_kb()


def _upload(tmp_path, form: str):
    plain = tmp_path / "two.vcf"
    plain.write_text(two_patient_text())
    if form == "vcf":
        return plain
    if form == "gzip":
        path = tmp_path / "two.vcf.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
        return path
    path = tmp_path / ("two.bcf" if form.startswith("bcf") else "two.bgz.vcf.gz")
    mode = {"bgzf": "wz", "bcf": "wb"}[form]
    src = VCF(str(plain))
    out = Writer(str(path), src, mode=mode)
    for rec in src:
        out.write_record(rec)
    out.close()
    return path


def _same_calls(a, b) -> None:
    assert a.samples == b.samples and a.genes == b.genes
    for g in a.genes:
        assert [a.table[i] for i in a.choice[g]] == [b.table[j] for j in b.choice[g]], g
    assert a.sample_warnings == b.sample_warnings
    assert [i.position_warnings for i in a.inputs] == [i.position_warnings for i in b.inputs]


@pytest.mark.parametrize("form", ["vcf", "gzip", "bgzf", "bcf"])
def test_every_upload_form_gets_an_indexed_copy_with_the_same_calls(tmp_path, form):
    upload = _upload(tmp_path, form)
    data = tmp_path / "data"
    read = queryable(upload, data, "abc123")
    assert read.parent == data / "indexed" and read.name.startswith("abc123.") and has_index(read)
    assert is_bgzf(read)
    assert read.is_symlink() == (form in ("bgzf", "bcf"))  # already bgzipped: linked, not copied
    assert VcfReader(read, KB, sorted(KB.genes)).windowed
    assert sorted(p.name for p in (data / "indexed").iterdir()) == [read.name, f"{read.name}.csi"]
    _same_calls(match([upload], use_index=False), match([read]))
    assert queryable(upload, data, "abc123") == read  # built once, then reused


def test_a_file_that_cannot_be_indexed_is_read_as_uploaded(tmp_path):
    lines = two_patient_text().splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#")]
    unsorted = tmp_path / "unsorted.vcf"
    unsorted.write_text("".join(line for line in lines if line.startswith("#")) + "".join(reversed(body)))
    data = tmp_path / "data"
    assert queryable(unsorted, data, "u1") == unsorted
    assert list((data / "indexed").iterdir()) == []  # no copy, no temporary file left
    raw_bcf = tmp_path / "raw.bcf"  # BCF without its BGZF blocks: readable, but htslib cannot index it
    raw_bcf.write_bytes(gzip.decompress(_upload(tmp_path, "bcf").read_bytes()))
    assert raw_bcf.read_bytes()[:3] == b"BCF" and queryable(raw_bcf, data, "u2") == raw_bcf
    assert list((data / "indexed").iterdir()) == []
    _same_calls(match([raw_bcf]), match([unsorted.with_name("two.vcf")]))
