"""permed's own wording of a recommendation, generated from its structured facts (any language).

`gettext` translates each phrase; the default keeps English. The same function writes the English
summary stored in the KB and the translated summaries of the HTML report.
"""

from __future__ import annotations


def N_(s: str) -> str:
    """Marks a string for translation without translating it (gettext convention)."""
    return s


ACTION_LABELS = {
    "avoid": N_("Avoid"),
    "alternative": N_("Use an alternative"),
    "dose_decrease": N_("Lower dose"),
    "dose_increase": N_("Higher dose"),
    "monitor": N_("Monitor"),
    "standard": N_("Standard dosing"),
    "no_recommendation": N_("No recommendation"),
    "see_guideline": N_("See guideline"),
}


# Guideline population codes (as the guideline data name them) in words for the report: to whom a
# recommendation applies. Our own wording of the guidelines' population definitions.
POPULATION_LABELS = {
    "pediatrics": N_("children"),
    "adults": N_("adults"),
    "child >40kg_adult": N_("adults, and children over 40 kg"),
    "NVI": N_("neurovascular indication (e.g. stroke or transient ischaemic attack)"),
    "CVI ACS PCI": N_("cardiovascular indication: acute coronary syndrome or percutaneous coronary intervention"),
    "CVI non-ACS non-PCI": N_("cardiovascular indication other than acute coronary syndrome or percutaneous "
                              "coronary intervention"),
    "PHT naive": N_("patients not yet taking phenytoin"),
    "PHT use >3mos": N_("patients taking phenytoin for more than 3 months"),
    "CBZ naive": N_("patients not yet taking carbamazepine"),
    "CBZ use >3mos": N_("patients taking carbamazepine for more than 3 months"),
    "CBZ-no alternatives": N_("patients not yet taking carbamazepine, when no alternative is available"),
    "OXC naive": N_("patients not yet taking oxcarbazepine"),
    "OXC use >3 mos": N_("patients taking oxcarbazepine for more than 3 months"),
}


# Drugs given only for one condition: their advice concerns a patient only when the patient has it, so the
# report does not raise it as an alarm for everyone (e.g. "avoid ivacaftor" for a CFTR reference genotype).
DRUG_INDICATIONS = {
    "ivacaftor": N_("patients with cystic fibrosis"),
}


def population_label(code: str | None, gettext=None) -> str | None:
    """A guideline population code in words (translated by `gettext`); unknown codes are shown as they are,
    "general" (everyone) as nothing."""
    if code is None or code == "general":
        return None
    words = POPULATION_LABELS.get(code)
    return (gettext or _identity)(words) if words else code


def _identity(s: str) -> str:
    return s


def action_label(action: str, gettext=_identity) -> str:
    return gettext(ACTION_LABELS.get(action, action))


def summary(action: str, also, factor, drug: str, alternatives, gettext=_identity) -> str:
    _ = gettext

    def pct(x: float) -> str:
        return f"{round(x * 100):d}%"

    factor_text = ""
    if factor:
        lo, hi = factor
        factor_text = pct(lo) if lo == hi else f"{pct(lo)}–{pct(hi)}"
    names = ", ".join(_(a) for a in list(alternatives)[:3])
    parts = {
        "avoid": _("Avoid %(drug)s.") % {"drug": drug},
        "alternative": _("Prefer an alternative drug."),
        "dose_decrease": (_("Use a lower dose (%(factor)s of standard).") % {"factor": factor_text}
                          if factor_text else _("Use a lower dose.")),
        "dose_increase": (_("Use a higher dose (%(factor)s of standard).") % {"factor": factor_text}
                          if factor_text else _("Use a higher dose.")),
        "monitor": _("Monitor response, adverse effects or drug levels."),
        "standard": (_("Standard dosing.") if not factor_text
                     else _("Dose %(factor)s of standard.") % {"factor": factor_text}),
        "no_recommendation": _("No genotype-based recommendation."),
        "see_guideline": _("Genotype-specific advice; see the guideline."),
    }
    out = [parts[action]]
    pending = bool(names)
    if action == "alternative" and names:
        out[0] = _("Prefer an alternative drug (e.g. %(names)s).") % {"names": names}
        pending = False
    for a in also:
        if a == "alternative":
            out.append(_("An alternative drug may be preferred (e.g. %(names)s).") % {"names": names}
                       if pending else _("An alternative drug may be preferred."))
            pending = False
        elif a in ("dose_decrease", "dose_increase") and action in ("avoid", "alternative"):
            out.append(_("If used: %(advice)s") % {"advice": parts[a]})
        elif a == "monitor":
            out.append(parts["monitor"])
    if pending:
        out.append(_("Alternatives named: %(names)s.") % {"names": names})
    return " ".join(out)
