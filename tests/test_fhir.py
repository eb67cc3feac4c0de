"""`permed call --format fhir`: HL7 FHIR R4 Genomics Reporting bundles, checked with fhir.resources' models
and against the IG's own PGx example (its FSH source in ../shared, read into a checklist here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from helpers import cli, rec, write_vcf

import permed
from permed.examples import example_vcf
from permed.report.fhir import IG, fhir_bundle

SHARED = Path(__file__).resolve().parents[2] / "shared"
FSH = SHARED / "reference" / "standards" / "fhir-genomics-reporting" / "input" / "fsh"
SD = f"{IG}/StructureDefinition/"


@pytest.fixture(scope="module")
def example_result():
    return permed.call(example_vcf(), medications=["clopidogrel"])


@pytest.fixture(scope="module")
def example_bundle(example_result):
    return fhir_bundle(example_result.patient("EXAMPLE-PATIENT"), kb=example_result.kb)


def resources(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"]]


def profile_of(resource: dict) -> str:
    return resource["meta"]["profile"][0]


def by_profile(bundle: dict, name: str) -> list[dict]:
    return [r for r in resources(bundle) if profile_of(r) == SD + name]


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def references(node) -> list[str]:
    """Every Reference.reference in a resource (any depth)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(references(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(references(v))
    return out


# ---- structure ---------------------------------------------------------------------------------------------
def test_the_written_bundle_parses_strictly_and_every_reference_resolves(tmp_path):
    run = cli("call", "--example", "-o", str(tmp_path / "out"), "--format", "fhir,html",
              "--medications", "clopidogrel")
    assert run.returncode == 0, run.stderr
    path = tmp_path / "out" / "EXAMPLE-PATIENT.fhir.json"
    assert (tmp_path / "out" / "EXAMPLE-PATIENT.report.html").is_file()  # combinable with html
    data = json.loads(path.read_text(encoding="utf-8"))
    Bundle.model_validate(data)  # strict: unknown elements are errors (a test below shows one)
    assert data["type"] == "transaction"
    full_urls = {e["fullUrl"] for e in data["entry"]}
    assert len(full_urls) == len(data["entry"])
    for e in data["entry"]:
        assert e["request"]["method"] == "POST" and e["request"]["url"] == e["resource"]["resourceType"]
        assert e["resource"]["meta"]["profile"], e["resource"]["resourceType"]
        for ref in references(e["resource"]):
            assert ref in full_urls, (e["resource"]["resourceType"], ref)
    # the subject is the Patient made from the sample name, created once whatever the times it is sent
    patient = next(e for e in data["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["resource"]["identifier"][0]["value"] == "EXAMPLE-PATIENT"
    assert patient["request"]["ifNoneExist"].endswith("|EXAMPLE-PATIENT")


def test_strict_parsing_refuses_an_element_fhir_does_not_have(example_bundle):
    from pydantic import ValidationError

    broken = json.loads(json.dumps(example_bundle))
    broken["entry"][0]["resource"]["diplotype"] = "*1/*1"
    with pytest.raises(ValidationError):
        Bundle.model_validate(broken)


def test_collection_bundle_and_an_ehr_patient_reference(tmp_path):
    run = cli("call", "--example", "-o", str(tmp_path / "o"), "--format", "fhir", "--fhir-bundle", "collection",
              "--fhir-patient", "Patient/ehr-123")
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "o" / "EXAMPLE-PATIENT.fhir.json").read_text(encoding="utf-8"))
    Bundle.model_validate(data)
    assert data["type"] == "collection" and all("request" not in e for e in data["entry"])
    assert not [r for r in resources(data) if r["resourceType"] == "Patient"]
    subjects = {r.get("subject", r.get("for", {})).get("reference") for r in resources(data)
                if "subject" in r or "for" in r}
    assert subjects == {"Patient/ehr-123"}


@pytest.mark.parametrize("args, message", [
    (("--fhir-bundle", "batch"), "--fhir-bundle 'batch'"),
    (("--fhir-patient", "Patient/../../x"), "--fhir-patient"),
    (("--fhir-patient", "ehr-123"), "Patient/123"),
])
def test_bad_fhir_options_are_refused_before_any_work(tmp_path, args, message):
    run = cli("call", "--example", "-o", str(tmp_path / "o"), "--format", "fhir", *args)
    assert run.returncode == 64 and message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_one_patient_reference_for_several_samples_is_refused(tmp_path):
    from helpers import two_patient_text

    vcf = tmp_path / "two.vcf"
    vcf.write_text(two_patient_text(), encoding="utf-8")
    run = cli("call", str(vcf), "-o", str(tmp_path / "o"), "--format", "fhir", "--fhir-patient", "Patient/1")
    assert run.returncode == 64 and "2 samples" in run.stderr
    assert not (tmp_path / "o").exists()


# ---- content -----------------------------------------------------------------------------------------------
def test_genotypes_phenotypes_and_advice_of_the_example(example_bundle, example_result):
    report = example_result.patient("EXAMPLE-PATIENT")
    genotypes = {next(c for c in r["component"] if c["code"]["coding"][0]["code"] == "48018-6")
                 ["valueCodeableConcept"]["text"]: r for r in by_profile(example_bundle, "genotype")}
    # one Genotype per called gene, labelled exactly as PharmCAT prints the call
    assert set(genotypes) == {g for g, e in report.genes.items() if e.called}
    cyp2c19 = genotypes["CYP2C19"]
    assert cyp2c19["code"]["coding"][0]["code"] == "84413-4"
    assert cyp2c19["valueCodeableConcept"]["text"] == "CYP2C19 *2/*17"
    assert codes(cyp2c19["valueCodeableConcept"]) == {("http://www.pharmvar.org", "CYP2C19")}
    gene = next(c for c in cyp2c19["component"] if c["code"]["coding"][0]["code"] == "48018-6")
    assert codes(gene["valueCodeableConcept"]) == {("http://www.genenames.org", "HGNC:2621")}
    # its haplotypes rest on the variants that define them; the variants are what the VCF carries
    urls = {e["fullUrl"]: e["resource"] for e in example_bundle["entry"]}
    haps = [urls[d["reference"]] for d in cyp2c19["derivedFrom"]
            if profile_of(urls[d["reference"]]) == SD + "haplotype"]
    assert sorted(h["valueCodeableConcept"]["text"] for h in haps) == ["CYP2C19 *17", "CYP2C19 *2"]
    star2 = next(h for h in haps if h["valueCodeableConcept"]["text"] == "CYP2C19 *2")
    rsids = set()
    for d in star2["derivedFrom"]:
        v = urls[d["reference"]]
        assert profile_of(v) == SD + "variant" and v["valueCodeableConcept"]["coding"][0]["code"] == "LA9633-4"
        rsids |= {c["valueCodeableConcept"]["coding"][0]["code"] for c in v["component"]
                  if c["code"]["coding"][0]["code"] == "81252-9"}
    assert "rs4244285" in rsids  # CYP2C19*2's splice variant
    # the gene's phenotype: the IG's implication, with LOINC's metabolizer answer and the activity score
    phenos = {r["derivedFrom"][0]["reference"]: r for r in by_profile(example_bundle, "therapeutic-implication")
              if not any(c["code"]["coding"][0]["code"] == "51963-7" for c in r["component"])}
    by_gene = {urls[ref]["valueCodeableConcept"]["text"].split()[0]: r for ref, r in phenos.items()}
    assert ("http://loinc.org", "LA10317-8") in codes(by_gene["CYP2C19"]["component"][0]["valueCodeableConcept"])
    assert ("http://loinc.org", "53040-2") in codes(by_gene["CYP2C19"]["code"])
    dpyd_score = [c for c in by_gene["DPYD"]["component"] if c["code"]["coding"][0]["code"] == "activity-score"]
    assert dpyd_score[0]["valueQuantity"]["value"] == float(report.genes["DPYD"].activity_score)
    # clopidogrel: CPIC's avoid for ACS/PCI -> an implication with RxNorm, guideline and PMIDs, and a Task
    clop = [r for r in by_profile(example_bundle, "therapeutic-implication")
            if any(codes(c["valueCodeableConcept"]) == {("http://www.nlm.nih.gov/research/umls/rxnorm", "32968")}
                   for c in r["component"] if c["code"]["coding"][0]["code"] == "51963-7")]
    assert clop and all(r["derivedFrom"] == [{"reference": next(
        e["fullUrl"] for e in example_bundle["entry"] if e["resource"] is cyp2c19)}] for r in clop)
    cpic = [r for r in clop if r["code"]["text"].endswith("(CPIC)")]
    artifacts = [x["valueRelatedArtifact"] for r in cpic for x in r["extension"]]
    assert any(a["type"] == "documentation" and "pharmgkb.org/guidelineAnnotation" in a["url"] for a in artifacts)
    assert any(a["type"] == "citation" and a["citation"] == "PMID:23698643" for a in artifacts)
    tasks = by_profile(example_bundle, "medication-recommendation")
    clop_refs = {e["fullUrl"] for e in example_bundle["entry"] if e["resource"] in clop}
    clop_tasks = [t for t in tasks if t["reasonReference"]["reference"] in clop_refs]
    assert {t["code"]["coding"][0]["code"] for t in clop_tasks} == {"LA26421-0"}  # consider an alternative
    alts = {i["valueCodeableConcept"]["text"] for t in clop_tasks for i in t.get("input", [])}
    assert {"ticagrelor", "prasugrel"} <= alts
    # clopidogrel is on the medication list: the Task is about the patient's statement of it
    statement = urls[clop_tasks[0]["focus"]["reference"]]
    assert statement["resourceType"] == "MedicationStatement"
    assert codes(statement["medicationCodeableConcept"]) == {("http://www.nlm.nih.gov/research/umls/rxnorm", "32968")}
    # every actionable recommendation (and only those) became a Task
    actionable = {(d, r.recommendation_id) for d, entry in report.drugs.items() for s in entry.sources.values()
                  for r in s.recommendations if r.actionable}
    assert len(tasks) == len(actionable)


def test_provenance_names_permed_the_knowledge_base_and_the_input(example_bundle, example_result):
    report = example_result.patient("EXAMPLE-PATIENT")
    (prov,) = [r for r in resources(example_bundle) if r["resourceType"] == "Provenance"]
    (device,) = [r for r in resources(example_bundle) if r["resourceType"] == "Device"]
    versions = {v["type"]["text"]: v["value"] for v in device["version"]}
    assert versions == {"software": permed.__version__, "knowledge base": report.knowledge_base.kb_version}
    ids = {e["what"]["identifier"]["value"] for e in prov["entity"] if "identifier" in e["what"]}
    assert report.inputs[0].sha256 in ids and report.knowledge_base.kb_sha256 in ids
    (dr,) = by_profile(example_bundle, "genomic-report")
    full = {id(e["resource"]): e["fullUrl"] for e in example_bundle["entry"]}
    assert prov["target"][0]["reference"] == full[id(dr)]


def test_uncalled_and_ambiguous_genes_are_never_a_confident_genotype(tmp_path, example_result):
    # a VCF with one CYP2C19 record: the other genes have no data, CYP2C19 has missing positions
    vcf = write_vcf(tmp_path / "one.vcf", rec("chr10", 94781859, "G", "A", "0/1"))
    res = permed.call(vcf)
    report = res.patient("S1")
    bundle = fhir_bundle(report, kb=res.kb)
    Bundle.model_validate(bundle)
    uncalled = {g for g, e in report.genes.items() if not e.called}
    assert {"CYP2D6", "DPYD", "TPMT"} <= uncalled
    genotype_genes = {r["valueCodeableConcept"]["text"].split()[0] for r in by_profile(bundle, "genotype")}
    assert not genotype_genes & uncalled
    (analysis,) = by_profile(bundle, "genomic-study-analysis")
    regions = next(x for x in analysis["extension"] if x["url"].endswith("genomic-study-analysis-regions"))
    listed = {x["url"]: set() for x in regions["extension"]}
    for x in regions["extension"]:
        if x["url"] != "description":
            listed[x["url"]].add(x["valueCodeableConcept"]["text"])
    assert listed["studied"] == set(report.genes)
    assert listed["uncalled"] == uncalled and listed["called"] == set(report.genes) - uncalled
    description = next(x["valueString"] for x in regions["extension"] if x["url"] == "description")
    missing = report.genes["CYP2C19"].missing_positions
    assert missing and str(missing[0]) in description and "CYP2D6: no call" in description
    (dr,) = by_profile(bundle, "genomic-report")
    assert "Not called:" in dr["conclusion"] and "CYP2D6" in dr["conclusion"]

    # an ambiguous call (two diplotypes fit): text names both, no coding, interpretation indeterminate
    base = example_result.patient("EXAMPLE-PATIENT")
    entry = base.genes["CYP2C9"].model_copy(update={"source_diplotypes": ["*1/*2", "*1/*3"]})
    ambiguous = base.model_copy(update={"genes": {**base.genes, "CYP2C9": entry}})
    bundle = fhir_bundle(ambiguous, kb=example_result.kb)
    (cyp2c9,) = [r for r in by_profile(bundle, "genotype") if r["valueCodeableConcept"]["text"].startswith("CYP2C9")]
    assert cyp2c9["valueCodeableConcept"] == {"text": "CYP2C9 *1/*2 or *1/*3"}
    assert cyp2c9["interpretation"][0]["coding"][0]["code"] == "IND"
    assert not any(r["valueCodeableConcept"]["text"].startswith("CYP2C9") for r in by_profile(bundle, "haplotype"))
    gene_implications = [r for r in by_profile(bundle, "therapeutic-implication")
                         if r["derivedFrom"][0]["reference"] == next(e["fullUrl"] for e in bundle["entry"]
                                                                   if e["resource"] is cyp2c9)
                         and not any(c["code"]["coding"][0]["code"] == "51963-7" for c in r["component"])]
    assert gene_implications == []  # no phenotype from an ambiguous genotype
    assert "Ambiguous: CYP2C9" in by_profile(bundle, "genomic-report")[0]["conclusion"]


def test_without_the_reports_knowledge_base_there_are_no_variant_observations(example_result):
    bundle = fhir_bundle(example_result.patient("EXAMPLE-PATIENT"))  # as the service builds it without a KB
    Bundle.model_validate(bundle)
    assert by_profile(bundle, "variant") == [] and by_profile(bundle, "genotype")


def test_phenoconversion_is_said_in_the_implication(tmp_path):
    calls = tmp_path / "cyp2d6.tsv"
    calls.write_text("CYP2D6\t*1/*1\n", encoding="utf-8")
    res = permed.call(example_vcf(), outside_calls=calls, medications=["codeine", "paroxetine"])
    bundle = fhir_bundle(res.patient("EXAMPLE-PATIENT"), kb=res.kb)
    codeine = [r for r in by_profile(bundle, "therapeutic-implication") if r["code"]["text"].startswith("codeine")]
    text = " ".join(c.get("valueString", "") for r in codeine for c in r["component"])
    assert "Adjusted for a drug interaction: CYP2D6" in text
    (genotype,) = [r for r in by_profile(bundle, "genotype") if r["valueCodeableConcept"]["text"].startswith("CYP2D6")]
    assert genotype["method"]["text"] == "outside call"


def _strip_display_text(node):
    """The bundle without its words: what must not change with --lang."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("text", "description", "conclusion", "citation") or (k == "display" and "url" in node):
                continue
            if k == "valueString" and (node.get("url") == "description" or node.get("code", {}).get(
                    "coding", [{}])[0].get("code") == "conclusion-string"):
                continue
            out[k] = _strip_display_text(v)
        return out
    if isinstance(node, list):
        return [_strip_display_text(v) for v in node]
    return node


def test_lang_zh_changes_display_text_only(example_result):
    report = example_result.patient("EXAMPLE-PATIENT")
    en = fhir_bundle(report, kb=example_result.kb)
    zh = fhir_bundle(report, kb=example_result.kb, lang="zh")
    Bundle.model_validate(zh)
    assert _strip_display_text(en) == _strip_display_text(zh)
    (dr,) = by_profile(zh, "genomic-report")
    assert re.search(r"[\u4e00-\u9fff]", dr["conclusion"]) and re.search(r"[\u4e00-\u9fff]", dr["code"]["text"])
    # coded displays stay the code system's own
    assert dr["code"]["coding"][0]["display"] == "Genetic analysis report"


# ---- the IG's own PGx example as a checklist -----------------------------------------------------------------
def _aliases() -> dict[str, str]:
    out = {}
    for line in (FSH / "Aliases.fsh").read_text(encoding="utf-8").splitlines():
        m = re.match(r"Alias:\s*(\$\S+)\s*=\s*(\S+)", line)
        if m:
            out[m[1]] = m[2]
    return out


def _fsh_instances(*files: Path) -> dict[str, dict]:
    """Instances of the FSH files: their profile, and their rules as (path, value) pairs."""
    instances: dict[str, dict] = {}
    current = None
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.startswith("Instance:"):
                current = instances.setdefault(line.split(":", 1)[1].strip(), {"rules": []})
            elif line.startswith("InstanceOf:") and current is not None:
                current["of"] = line.split(":", 1)[1].strip()
            elif line.startswith("* ") and current is not None and "=" in line:
                path, value = line[2:].split("=", 1)
                current["rules"].append((path.strip(), value.strip()))
    return instances


IG_PROFILES = {"GenomicReport": "genomic-report", "TherapeuticImplication": "therapeutic-implication",
               "Genotype": "genotype", "Haplotype": "haplotype", "Variant": "variant",
               "MedicationRecommendation": "medication-recommendation"}
# what the example has and a permed bundle cannot: the order, the specimen, the performing lab and the old
# MolecularSequence resource (permed knows none of them; the Variant carries its position in components)
NOT_COVERED = {"ServiceRequest", "Specimen", "Organization", "MolecularSequence"}


def ig_checklist() -> tuple[dict, set]:
    """From the IG's PGx example: per profile the code, the category codes and the component codes it uses,
    and the links between profiles (from, element, to)."""
    aliases = _aliases()
    inst = _fsh_instances(FSH / "examples" / "bundle-pgxexample.fsh",
                          FSH / "examples" / "med-usage-impact-task-pgx-example.fsh")

    def code_of(value: str) -> tuple[str, str] | None:
        m = re.match(r"(\$\w+|\w+CS)#([\w.:-]+)", value)
        if not m:
            return None
        system = aliases.get(m[1], f"{IG}/CodeSystem/tbd-codes-cs" if m[1] == "TbdCodesCS" else m[1])
        return system, m[2]

    items: dict[str, dict] = {}
    links: set[tuple[str, str, str]] = set()
    for i in inst.values():
        kind = i.get("of")
        if kind not in IG_PROFILES:
            continue
        item = items.setdefault(kind, {"code": set(), "category": set(), "component": set()})
        for path, value in i["rules"]:
            if path == "code":
                item["code"].add(code_of(value))
            elif path.startswith("category"):
                item["category"].add(code_of(value))
            elif path.startswith("component") and path.endswith(".code"):
                item["component"].add(code_of(value))
            m = re.match(r"Reference\(([\w-]+)\)", value)
            if m and m[1] in inst:
                element = re.sub(r"\[.*?\]", "", path).split(".")[0]
                target = inst[m[1]].get("of")
                links.add((kind, element, target))
    return items, links


def test_our_bundle_covers_the_ig_pgx_example(example_bundle):
    items, links = ig_checklist()
    assert set(items) == set(IG_PROFILES)  # the checklist read every profile
    assert items["Genotype"]["code"] == {("http://loinc.org", "84413-4")}  # (the reading is not empty)
    ours = {kind: by_profile(example_bundle, prof) for kind, prof in IG_PROFILES.items()}
    for kind, item in items.items():
        assert ours[kind], f"no {kind} in our bundle"
        our_codes = set().union(*(codes(r["code"]) for r in ours[kind]))
        assert item["code"] <= our_codes, (kind, item["code"] - our_codes)
        our_categories = {c for r in ours[kind] for cat in r.get("category", []) for c in codes(cat)}
        assert item["category"] <= our_categories, (kind, item["category"] - our_categories)
        our_components = {c for r in ours[kind] for comp in r.get("component", []) for c in codes(comp["code"])}
        assert item["component"] <= our_components, (kind, item["component"] - our_components)
    # links: every link the example makes between IG profiles, ours makes too; the rest is known and listed
    urls = {e["fullUrl"]: e["resource"] for e in example_bundle["entry"]}
    kind_of = {}
    for e in example_bundle["entry"]:
        r = e["resource"]
        prof = r.get("meta", {}).get("profile", [""])[0].removeprefix(SD)
        kind_of[e["fullUrl"]] = next((k for k, p in IG_PROFILES.items() if p == prof), r["resourceType"])
    our_links = set()
    for full, r in urls.items():
        for element, value in r.items():
            for ref in references(value):
                our_links.add((kind_of[full], element, kind_of[ref]))
    missing = {(a, el, b) for a, el, b in links if (a, el, b) not in our_links}
    assert {b for _a, _el, b in missing} <= NOT_COVERED, missing
    assert ("GenomicReport", "extension", "MedicationRecommendation") in our_links  # recommended-action
    assert ("MedicationRecommendation", "focus", "MedicationStatement") in our_links
    assert ("Haplotype", "derivedFrom", "Variant") in our_links
