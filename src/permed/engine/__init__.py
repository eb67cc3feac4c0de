"""The engine: one place where the stages are wired (read -> match -> interpret -> advise)."""

from permed.engine.engine import Engine
from permed.engine.inputs import Inputs, VcfInput
from permed.engine.result import Result

__all__ = ["Engine", "Inputs", "Result", "VcfInput"]
