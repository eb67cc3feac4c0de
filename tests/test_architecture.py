"""The design, checked on the source: dependencies point down the stages, and only the engine wires them."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

SRC = ROOT / "src" / "permed"
# a module may import from its own layer and the layers before it
LAYERS = [
    {"errors", "options", "documents", "staging", "examples"},
    {"kb"},
    {"genotypes"},
    {"matcher"},
    {"phenotype"},
    {"advice"},
    {"report"},
    {"engine"},
    {"biobank"},
    {"service"},
    {"federation"},  # a node reuses the service's request-guard pieces
    {"api"},
    {"cli", "launch", "__init__", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str:
    """The layer name of `permed.x.y` (x); `from permed import __version__` reads only the version."""
    return module.split(".")[1] if module.count(".") else "errors"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every permed import, module-level or inside functions, outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("permed"):
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("permed")]
    return out


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        yield path, rel.parts[0] if len(rel.parts) > 1 else rel.parts[0]


def test_dependencies_point_down_the_stages():
    wrong = []
    for path, part in _modules():
        if part not in LAYER:
            wrong.append(f"{path}: module not placed in a layer")
            continue
        for line, module in _imports(path):
            target = _part(module)
            if target in LAYER and LAYER[target] > LAYER[part]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_named_boundaries():
    """The issue's two cases by name: the knowledge base knows nothing of advice, the VCF reader nothing
    of the matcher."""
    for path in (SRC / "kb").rglob("*.py"):
        assert not [m for _, m in _imports(path) if m.startswith("permed.advice")], path
    assert not [m for _, m in _imports(SRC / "genotypes" / "vcf_reader.py") if m.startswith("permed.matcher")]


def test_only_the_engine_wires_the_stages():
    """Reading, matching, interpretation and advice are put together in permed/engine only: no other
    module of the product calls the stage entry points."""
    entry_points = {"VcfReader", "PatternCaller", "plan_units", "run_unit", "Assembly", "interpret", "AdviceSet"}
    defined_in = {"VcfReader": "genotypes", "PatternCaller": "matcher", "interpret": "phenotype",
                  "AdviceSet": "advice"}
    wrong = []
    for path, part in _modules():
        if part == "engine":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in entry_points and defined_in.get(name) != part:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert not wrong, "\n".join(wrong)
