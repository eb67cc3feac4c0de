"""OUT/<sample>.report.html (and .pdf): the clinician's report, one self-contained printable file.

Order: actionable findings first (current medications on top), then the genotype summary, the
evidence behind each call, every drug with a guideline, and sources and limitations.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from permed import __version__
from permed.advice.advice_set import SampleAdvice
from permed.advice.model import ACTIONABLE
from permed.errors import ConfigurationError, MissingExtraError
from permed.kb.wording import DRUG_INDICATIONS, N_, action_label, population_label, summary
from permed.matcher.labels import HETEROZYGOUS
from permed.phenotype.model import NO_RESULT, GeneReport
from permed.report.gene_summary import summarize
from permed.report.i18n import translations
from permed.report.naming import display_name

if TYPE_CHECKING:
    from permed.engine.result import Result

LIMITATIONS = [
    N_("Not a diagnostic device: act on these results only within a validated clinical workflow."),
    N_("Calls cover the variants in the allele definitions only; rare or novel variants are not assessed."),
    N_("CYP2D6 gene deletions, duplications and hybrids are invisible in VCF data; use a copy-number-aware test."),
    N_("Positions missing from the input are not assumed to be reference; a missing position can hide an allele."),
    N_("Advice summaries are permed's short wording of the guideline's recommendation; read the linked "
       "guideline before changing therapy."),
    N_("Guideline data: PharmCAT's 2024-05 bundle of CPIC and DPWG recommendations; FDA labelling is not included."),
]


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """The compiled report template, kept between runs in jinja2's per-user, owner-only temporary
    directory (compiling it costs more than rendering a report); trouble with that directory only
    costs a compile."""

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, TypeError):
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return _QuietBytecodeCache()
    except (OSError, RuntimeError):  # no safe temporary directory
        return None


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("permed.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True, lstrip_blocks=True,
        bytecode_cache=_bytecode_cache(),
    )
    return env


_READ_AS = re.compile(r"^Read as (.+); from unphased data (.+) fits the same variants and cannot be excluded\.$")


def message_text(text: str, _) -> str:
    """A gene message in the report's language: the engine's fixed texts through the catalog, the unphased
    alternatives through one phrase with the alleles filled in; anything else (positions listed) as it is."""
    m = _READ_AS.match(text)
    if m:
        return _("Read as %(call)s; from unphased data %(other)s fits the same variants and cannot be "
                 "excluded.") % {"call": m.group(1), "other": m.group(2)}
    return _(text)


def display_label(label: str, _) -> str:
    """PharmCAT's "X (heterozygous)" label is data; on the page its qualifier is words of the report's language."""
    if label.endswith(HETEROZYGOUS):
        het = _("heterozygous")
        return f"{label.removesuffix(HETEROZYGOUS)} ({het})"
    return label


def summary_calls(report: GeneReport, call, _=lambda x: x) -> list[str]:
    """Calls as the genotype summary shows them. Unphased DPYD/RYR1 results list the alleles found;
    one found on both chromosomes is marked homozygous (CPIC's lowest-function display)."""
    calls = [display_label(c, _) for c in report.print_calls]
    if report.outside_call or call is None or call.diplotypes or not call.haplotype_matches:
        return calls
    hom = _("homozygous")
    return [f"{c} ({hom})" if call.haplotype_matches.count(c) > 1 else c for c in calls]


def _allele_functions(rep: GeneReport, _) -> list[str]:
    """Each allele of the diplotype(s) advice uses, with its function ("*2: No function"), once."""
    out: list[str] = []
    for d in rep.recommendation_diplotypes:
        for allele, fn in zip(d.alleles, d.functions or [None] * len(d.alleles)):
            text = f"{allele}: {_(fn)}" if fn else None
            if text and text not in out:
                out.append(text)
    return out


class _GuidelineFacts:
    """What every report of one knowledge base reads from its guidelines, worked out once (a cohort's reports
    would otherwise rescan every guideline per patient and per drug)."""

    _cache: dict[int, tuple] = {}

    def __init__(self, kb):
        found: dict[str, set[str]] = {}
        for g in kb.guidelines:
            for gene in g.genes:
                found.setdefault(gene, set()).update(d.name for d in g.drugs)
        # the drugs whose guidelines use each gene (as PharmCAT's genotype table lists them)
        self.drugs_by_gene = {gene: sorted(names) for gene, names in found.items()}
        self.by_id = {g.id: g for g in kb.guidelines}

    @classmethod
    def of(cls, kb) -> _GuidelineFacts:
        hit = cls._cache.get(id(kb))
        if hit is None or hit[0] is not kb:
            hit = cls._cache[id(kb)] = (kb, cls(kb))
        return hit[1]

    def references(self, guideline_ids: list[str]) -> list[dict]:
        """The guidelines behind one source's advice for a drug: their page and PMIDs (every drug row cites its
        sources, whether or not a recommendation applies)."""
        return [{"url": g.url, "pmids": list(g.pmids)} for i in guideline_ids if (g := self.by_id.get(i))]


def _say_once(evidence: list[dict], _) -> list[str]:
    """Notes every gene would repeat, said once for the report: which genes had their reference allele named
    for lack of any defining variant, which lie on the minus strand. Each gene keeps only what is particular
    to it (the evidence section speaks to a person, not in the engine's message names)."""
    reference, minus = [], []
    for ev in evidence:
        keep = []
        for m in ev["messages"]:
            if m.name == "reference-allele":
                reference.append(ev["gene"])
            elif m.name.endswith("reverse complement footnote") and m.text.startswith(
                    f"{ev['gene']} lies on the minus strand:"):
                minus.append(ev["gene"])
            else:
                keep.append(m)
        ev["messages"] = [message_text(m.text, _) for m in keep]
    notes = []
    if reference:
        notes.append(_("Reference allele named for %(genes)s: none of the variants that define the gene's other "
                       "alleles was found at the positions read (positions missing from the input are listed "
                       "under each gene).") % {"genes": ", ".join(reference)})
    if minus:
        notes.append(_("%(genes)s lie on the minus strand: bases are shown as in the VCF (plus strand), "
                       "complementary to the gene-based names.") % {"genes": ", ".join(minus)})
    return notes


def _gene_phrase(u, _) -> str:
    bits = [u.gene]
    if u.diplotype:
        bits.append(display_label(u.diplotype, _))
    if u.phenotype and u.phenotype != NO_RESULT:
        bits.append(f"({_(u.phenotype)})")
    elif u.lookup_key == NO_RESULT:
        bits.append(_("not tested"))
    if u.phenoconverted:
        bits.append("⚠ " + _("adjusted for a drug interaction"))
    return " ".join(bits)


def _rows(source_advice, drug_label: str, _, drug: str | None = None) -> list[dict]:
    rows = []
    indication = DRUG_INDICATIONS.get(drug)
    for r in source_advice.recommendations:
        rows.append({
            "source": r.source, "action": r.action, "action_label": action_label(r.action, _),
            "summary": summary(r.action, r.also, r.dose_factor, drug_label, r.alternatives, _),
            "strength": r.strength if r.strength not in (None, "N/A") else None,
            "population": population_label(r.population, _) or (_(indication) if indication else None),
            "genes": [_gene_phrase(u, _) for u in r.genotype], "url": r.url, "pmids": list(r.pmids),
        })
    return rows


def report_context(result: Result, si: int, advice: SampleAdvice | None, lang: str) -> dict:
    _ = translations(lang).gettext
    callset, pset, kb = result.calls, result.phenotypes, result.kb
    facts = _GuidelineFacts.of(kb)
    called = set(callset.genes)
    genes, evidence, untested = [], [], []
    for gene in pset.genes:
        rep = pset.report(si, gene)
        call = callset.call(si, gene) if gene in called else None
        gs = summarize(call, rep)
        status, cls = _(gs.label), gs.css
        shown = summary_calls(rep, call, _)
        call_text = " / ".join(shown) if rep.reportable else status
        phenos = [_(p) for p in rep.phenotypes if p != NO_RESULT] if rep.reportable else []
        scores = [s for s in rep.activity_scores if s != NO_RESULT]
        genes.append({"gene": gene, "call": " OR ".join(shown), "calls": shown,
                      "phenotype": "; ".join(phenos),
                      "activity": " OR ".join(scores), "status": status, "status_class": cls,
                      "functions": _allele_functions(rep, _) if rep.reportable else [],
                      "drugs": [_(x) for x in facts.drugs_by_gene.get(gene, ())]})
        if not rep.reportable:
            untested.append(gene)
        ev = {"gene": gene, "call": call_text, "outside": rep.outside_call, "messages": rep.messages,
              "candidates": [d.label for d in rep.recommendation_diplotypes] if rep.reportable else []}
        if call is not None and not rep.outside_call:
            gdef = kb.genes[gene]
            filled = sum(1 for e in call.evidence if e.status == "reference_filled")
            ev.update(total=len(gdef.loci), read=len(gdef.loci) - len(call.missing_positions) - filled,
                      filled=filled, phased=call.phased, missing=call.missing_positions,
                      source_file=callset.gene_source(si, gene))
            if call.status == "uncallable":
                ev["why_not"] = _("The genotypes found fit no combination of two defined alleles (e.g. an "
                                  "unexpected variant or an incomplete phase), so no call is made.")
            elif call.status == "no_data":
                ev["why_not"] = _("The input has no data at this gene's positions.")
        evidence.append(ev)

    evidence_notes = _say_once(evidence, _)
    actionable, conditional, current, drugs = [], [], [], []
    if advice is not None:
        for d in advice.current:  # the patient's own drugs first, whatever the advice
            label = _(d.drug)
            rows = [r for s in d.sources for r in _rows(s, label, _, d.drug)]
            current.append({"drug": d.drug, "label": label, "on_list": True, "rows": rows or [{
                "source": "", "action": "no_recommendation", "action_label": action_label("no_recommendation", _),
                "summary": _("No recommendation for this genotype."), "strength": None, "population": None,
                "genes": [], "url": None}]})
        for d in advice.actionable:
            if d.on_medication_list:
                continue
            label = _(d.drug)
            rows = [r for s in d.sources for r in _rows(s, label, _, d.drug) if r["action"] in ACTIONABLE]
            # advice that applies only with a condition the patient is not known to have (a population such as
            # ACS/PCI or treatment-naive, or a drug given for one disease): shown apart, with the condition,
            # not as an alarm for everyone; on the medication list it is the patient's own drug (above)
            general = [r for r in rows if not r["population"]]
            conditioned = [r for r in rows if r["population"]]
            if general:
                actionable.append({"drug": d.drug, "label": label, "on_list": False, "rows": general})
            if conditioned:
                conditional.append({"drug": d.drug, "label": label, "on_list": False, "rows": conditioned})
        for d in sorted(advice.drugs, key=lambda x: (not x.on_medication_list, x.drug)):
            label = _(d.drug)
            by = {s.source: s for s in d.sources}
            cells = []
            for source in ("CPIC", "DPWG"):
                s = by.get(source)
                if s is None:
                    cells.append(None)
                    continue
                note = (_("gene not tested: %(genes)s") % {"genes": ", ".join(s.missing_genes)} if s.missing_genes
                        else _("no recommendation for this genotype"))
                cells.append({"rows": _rows(s, label, _, d.drug), "note": note,
                              "refs": facts.references(s.guidelines)})
            drugs.append({"drug": d.drug, "slug": re.sub(r"[^a-z0-9]+", "-", d.drug), "label": label,
                          "on_list": d.on_medication_list, "sources": cells})
    conversions = []
    for c in advice.phenoconversions if advice else []:
        conversions.append({"gene": c.gene, "inhibitor": c.inhibitor, "strength": c.strength,
                            "from_text": ", ".join(_(p) for p in c.from_phenotypes),
                            "to_text": ", ".join(_(p) for p in c.to_phenotypes)})
    meds = advice.medications.as_dict() if advice else {"given": [], "unrecognised": []}
    return {
        "lang": lang, "version": __version__, "sample": display_name(callset.samples[si]), "created": result.created,
        "kb_version": kb.kb_version, "kb_sha": (kb.sha256 or "")[:16], "attribution": kb.attribution,
        "licence": kb.licence,
        "sources": [f"{s.name} ({s.release}, {s.data_version}; {s.licence})" for s in kb.sources],
        "inputs": [Path(callset.inputs[i].file).name for i in callset.sample_files[si]],
        "medications": meds, "phenoconversions": conversions, "actionable": actionable, "conditional": conditional,
        "evidence_notes": evidence_notes,
        "current": current,
        "untested": untested,
        "genes": genes, "evidence": evidence, "drugs": drugs, "limitations": [_(x) for x in LIMITATIONS],
    }


def render_html(context: dict) -> str:
    env = _environment()
    tr = translations(context["lang"])
    env.install_gettext_translations(tr, newstyle=False)
    return env.get_template("report.html.j2").render(**context)


def check_pdf():
    """WeasyPrint's HTML class, or a one-line error naming what to install (before any work is done)."""
    try:
        from weasyprint import HTML
    except ModuleNotFoundError as exc:
        raise (MissingExtraError.from_import_error(exc) or exc) from None
    except (ImportError, OSError) as exc:  # OSError: the pango/cairo system libraries are missing
        raise ConfigurationError(f"--format pdf needs WeasyPrint's system libraries (pango): {exc}") from None
    return HTML


def write_pdf(html: str, path: Path) -> None:
    check_pdf()(string=html).write_pdf(str(path))

