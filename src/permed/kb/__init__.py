"""Knowledge base: allele definitions in permed's own, versioned, validated format."""

from permed.kb.load import load_kb
from permed.kb.model import GeneDefinition, KnowledgeBase, Locus, NamedAllele

__all__ = ["GeneDefinition", "KnowledgeBase", "Locus", "NamedAllele", "load_kb"]
