"""OUT/<sample>.report.json: versioned per-sample report (schema permed.report/1)."""

from __future__ import annotations

import datetime as _dt
import json
import os

from permed import __version__
from permed.pipeline import CallSet

SCHEMA = "permed.report/1"


class SampleReportWriter:
    """Builds report JSON; each distinct gene call is serialised once and shared by every sample."""

    def __init__(self, callset: CallSet, created: str | None = None):
        self.callset = callset
        self._fragments: dict[int, str] = {}
        if created is None:
            # SOURCE_DATE_EPOCH (reproducible-builds convention) pins the timestamp for byte-identical reruns
            epoch = os.environ.get("SOURCE_DATE_EPOCH")
            now = (_dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch and epoch.isdigit()
                   else _dt.datetime.now(_dt.UTC))
            created = now.replace(microsecond=0).isoformat()
        self._head = {
            "schema": SCHEMA,
            "generator": {"name": "permed", "version": __version__},
            "created": created,
            "knowledge_base": callset.kb.provenance(),
            "attribution": callset.kb.attribution,
            "options": callset.options.as_dict(),
        }

    def _fragment(self, call) -> str:
        frag = self._fragments.get(id(call))
        if frag is None:
            data = call.model_dump(mode="json", exclude={"gene", "evidence"})
            # evidence rows omit default fields (phase set, flags) to keep reports small
            data["evidence"] = [e.model_dump(mode="json", exclude_defaults=True) for e in call.evidence]
            frag = json.dumps(data, separators=(",", ":"))
            self._fragments[id(call)] = frag
        return frag

    def render(self, si: int) -> str:
        cs = self.callset
        head = dict(self._head)
        head["sample"] = cs.samples[si]
        head["inputs"] = [
            {"file": cs.inputs[i].file, "sha256": cs.inputs[i].sha256, "notices": cs.inputs[i].notices}
            for i in cs.sample_files[si]
        ]
        head["gene_sources"] = {g: src for g in cs.genes if (src := cs.gene_source(si, g))}
        head["vcf_warnings"] = cs.sample_vcf_warnings(si)
        body = json.dumps(head, separators=(",", ":"))[:-1]
        genes = ",".join(f'"{g}":{self._fragment(cs.call(si, g))}' for g in cs.genes)
        return body + ',"genes":{' + genes + "}}\n"
