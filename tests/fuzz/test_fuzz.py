"""The VCF fuzzer on a fixed budget (2,400 seeded mutants of real records): every mutant ends in a call or in
one of our one-line errors with nothing written; no other exception, no death of the process, no hang.
A failure names the seed and mutant number: `vcf_mutants.reproduce(seed, k)` gives its bytes."""

import pytest
import vcf_mutants

SEED = 20261130
BATCHES = [(0, 1200), (1200, 1200)]


@pytest.mark.parametrize(("start", "count"), BATCHES)
def test_mutated_vcfs_end_in_a_call_or_our_error(start, count):
    result = vcf_mutants.run_batch(SEED, start, count, timeout=1800)
    assert result.ran == count
    assert not result.failures, [f"seed {SEED} mutant {f['mutant']} ({f['what']}): {f['problem']}"
                                 for f in result.failures[:5]]


def test_the_fuzzer_sees_a_broken_contract(monkeypatch, tmp_path):
    """The checks themselves fail when the code is wrong: an exception other than ours, and output left
    behind after an error, are reported."""
    from permed.engine import Engine

    def boom(*_a, **_k):
        raise ValueError("not ours")

    path = tmp_path / "x.vcf"
    data, _ = vcf_mutants.mutant(vcf_mutants.seeds()[0], __import__("random").Random(1))
    path.write_bytes(data)
    monkeypatch.setattr(Engine, "match", boom)
    assert vcf_mutants._check_stages(path).startswith("ValueError")
    assert "exit 1" in vcf_mutants._check_one(path, tmp_path / "out")
