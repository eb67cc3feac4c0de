"""What a run is given about its patients: VCF/BCF files, outside calls and medications."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from permed.phenotype.caller_formats import check_format
from permed.phenotype.outside_calls import OutsideCallsText


@dataclass(frozen=True)
class VcfInput:
    """A VCF/BCF file. `name`, `label` and `sha256` let a caller that reads a copy of a file (the
    service reads an indexed copy of an upload) report the original: reports show `name` (default:
    the file name) and its `sha256` (default: the file's), messages say `label` (default: the path)."""

    path: Path
    name: str | None = None
    label: str | None = None
    sha256: str | None = None

    @property
    def report_name(self) -> str:
        return self.name or Path(self.path).name

    @property
    def message_label(self) -> str:
        return self.label or str(self.path)


OutsideCallsSource = Path | OutsideCallsText


@dataclass
class Inputs:
    """Everything known about the patients of a run."""

    vcfs: list[VcfInput] = field(default_factory=list)
    # PharmCAT-format files apply to every sample; callers' files (Cyrius, Aldy...) to the samples they name
    outside_calls: list[OutsideCallsSource] = field(default_factory=list)
    medications: list[str] = field(default_factory=list)  # names, RxNorm CUIs or ATC codes
    patient: str | None = None  # the patient's name when there is no VCF (outside calls only)
    # the outside calls' format (pharmcat, cyrius, aldy, stellarpgx, pypgx); None: detected per file
    outside_calls_format: str | None = None

    @classmethod
    def of(cls, vcfs=(), outside_calls=(), medications=None, patient: str | None = None,
           outside_calls_format: str | None = None) -> Inputs:
        """Inputs from plain values: paths (str or Path) or VcfInputs; medications as a list or as
        one comma-separated string."""
        if isinstance(vcfs, (str, Path, VcfInput)):
            vcfs = [vcfs]
        if isinstance(outside_calls, (str, Path, OutsideCallsText)):
            outside_calls = [outside_calls]
        if isinstance(medications, str):
            medications = [medications]
        return cls(
            vcfs=[v if isinstance(v, VcfInput) else VcfInput(Path(v)) for v in vcfs],
            outside_calls=[o if isinstance(o, OutsideCallsText) else Path(o) for o in outside_calls or ()],
            medications=[m for m in (medications or []) if m is not None],
            patient=patient,
            outside_calls_format=check_format(outside_calls_format),
        )

    def default_patient(self) -> str:
        """The name of a patient known only from outside calls: given, or the first file's stem."""
        if self.patient:
            return self.patient
        first = self.outside_calls[0]
        name = first.name if isinstance(first, OutsideCallsText) else Path(first).name
        return name.split(".")[0] or "patient"
