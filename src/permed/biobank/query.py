"""Query a cohort's Parquet outputs without re-running: a small filter language, or plain SQL (DuckDB).

Filter language (combine with and, or, not and parentheses):

    CYP2C19 phenotype == 'Poor Metabolizer'
    CYP2D6 activity_score >= 2 and not SLCO1B1 phenotype == 'Normal Function'
    superpopulation == 'EAS' and CYP2C9 diplotype contains '*3'

An atom is `GENE FIELD OP VALUE` (FIELD: a calls.parquet column) or `population|superpopulation OP
VALUE` when the cohort was run with --populations. OP: == = != < <= > >= contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from permed.errors import InputFileError

FIELDS = ("status", "diplotype", "phenotype", "activity_score", "match_score", "phased", "haplotype_1",
          "haplotype_2", "outside_call", "recommendation_diplotype", "lookup_keys", "input_file")
SAMPLE_FIELDS = ("population", "superpopulation")
_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<op>==|!=|<=|>=|=|<|>|\(|\))"""
                    r"""|(?P<num>-?\d+(?:\.\d+)?(?![\w.-]))|(?P<word>[A-Za-z0-9_.*-]+))""")
_SQL_OP = {"==": "=", "=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# the usual abbreviations of metabolizer phenotypes (CPIC's terms), accepted in phenotype conditions
PHENOTYPE_ABBREVIATIONS = {"PM": "Poor Metabolizer", "IM": "Intermediate Metabolizer", "NM": "Normal Metabolizer",
                           "RM": "Rapid Metabolizer", "UM": "Ultrarapid Metabolizer"}
_JOINERS = frozenset({"and", "or", "not"})


@dataclass
class Atom:
    """One `GENE FIELD OP VALUE` condition, kept to tell the user when it can never match."""

    gene: str
    field: str
    op: str
    value: object


@dataclass
class Compiled:
    where: str
    params: list
    genes: list[str]
    atoms: list[Atom]
    warnings: list[str]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise InputFileError(f"query: cannot read {expr[pos:pos + 20]!r} (at character {pos + 1})")
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        out.append((kind, text))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, expr: str, genes: set[str], sample_fields: set[str]):
        self.toks = _tokens(expr)
        self.i = 0
        self.genes = genes
        self.sample_fields = sample_fields
        self.params: list = []
        self.used: list[str] = []
        self.atoms: list[Atom] = []

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self):
        t = self.peek()
        if t[0] is None:
            raise InputFileError("query: unexpected end of expression")
        self.i += 1
        return t

    def keyword(self, word: str) -> bool:
        kind, text = self.peek()
        if kind == "word" and text.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> str:
        sql = self.expr()
        if self.peek()[0] is not None:
            raise InputFileError(f"query: unexpected {self.peek()[1]!r}; combine conditions with and / or")
        return sql

    def expr(self) -> str:
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.keyword("not"):
            return f"(NOT {self.factor()})"
        if self.peek() == ("op", "("):
            self.take()
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise InputFileError("query: missing ')'")
            return inner
        return self.atom()

    def _value(self, after: str, field: str) -> tuple[str, str]:
        vkind, value = self.take()
        if vkind not in ("str", "word", "num"):
            raise InputFileError(f"query: expected a value after {after}, found {value!r}")
        nkind, following = self.peek()
        if vkind == "word" and nkind == "word" and following.lower() not in _JOINERS:
            # `phenotype == Poor Metabolizer`: the second word would otherwise be read as a new condition
            raise InputFileError(f"query: {value} {following}: quote a value of several words, e.g. "
                                 f"'{value} {following}'")
        if field == "phenotype" and vkind != "num" and value.upper() in PHENOTYPE_ABBREVIATIONS:
            value = PHENOTYPE_ABBREVIATIONS[value.upper()]
        return vkind, value

    def _op_value(self, column: str, field: str, gene: str | None = None) -> str:
        kind, op = self.take()
        if kind == "word" and op.lower() == "contains":
            _, value = self._value("contains", field)
            self.params.append(value)
            self._note(gene, field, "contains", value)
            return f"contains(lower({column}), lower(?))"
        if kind != "op" or op not in _SQL_OP:
            raise InputFileError(f"query: expected a comparison (== != < <= > >= contains), found {op!r}")
        vkind, value = self._value(op, field)
        if vkind == "num":
            self.params.append(float(value))
            self._note(gene, field, _SQL_OP[op], float(value))
            return f"TRY_CAST({column} AS DOUBLE) {_SQL_OP[op]} ?"
        self.params.append(value)
        self._note(gene, field, _SQL_OP[op], value)
        if _SQL_OP[op] in ("=", "<>"):  # values match whatever their case ('poor metabolizer', 'eas')
            return f"lower({column}) {_SQL_OP[op]} lower(?)"
        return f"{column} {_SQL_OP[op]} ?"

    def _note(self, gene: str | None, field: str, op: str, value) -> None:
        if gene is not None:
            self.atoms.append(Atom(gene, field, op, value))

    def atom(self) -> str:
        kind, name = self.take()
        if kind != "word":
            raise InputFileError(f"query: expected a gene name, found {name!r}")
        if name.lower() in self.sample_fields:
            cond = self._op_value(name.lower(), name.lower())
            return f"sample IN (SELECT sample FROM samples WHERE {cond})"
        if name not in self.genes:
            hint = " (population fields need a cohort run with --populations)" if name.lower() in SAMPLE_FIELDS else ""
            raise InputFileError(f"query: {name!r} is not a gene of this cohort{hint}; "
                            f"genes: {', '.join(sorted(self.genes))}")
        fkind, field = self.take()
        if fkind != "word" or field.lower() not in FIELDS:
            raise InputFileError(f"query: {field!r} is not a field; fields: {', '.join(FIELDS)}")
        if name not in self.used:
            self.used.append(name)
        self.params.append(name)
        cond = self._op_value(f'"{field.lower()}"', field.lower(), name)
        return f"sample IN (SELECT sample FROM calls WHERE gene = ? AND {cond})"


class CohortQuery:
    """A cohort output directory opened in DuckDB: views calls, frequencies (and samples)."""

    def __init__(self, out_dir: Path):
        import duckdb

        self.dir = Path(out_dir)
        calls = self.dir / "calls.parquet"
        if not calls.is_file():
            raise InputFileError(f"{self.dir}: no calls.parquet here; run `permed cohort ... -o {self.dir}` first")
        self.con = duckdb.connect()
        self.tables = []
        for name in ("calls", "frequencies", "samples"):
            p = self.dir / f"{name}.parquet"
            if p.is_file():
                path = str(p).replace("'", "''")
                self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}', file_row_number=true)"
                                 if name == "calls" else
                                 f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
                self.tables.append(name)

    def genes(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT DISTINCT gene FROM calls").fetchall()}

    def sql(self, query: str):
        import duckdb

        try:
            rel = self.con.execute(query)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputFileError(f"--sql: {first}") from None
        cols = [d[0] for d in rel.description] if rel.description else []
        return cols, rel.fetchall()

    def compile(self, expr: str) -> Compiled:
        fields = set(SAMPLE_FIELDS) if "samples" in self.tables else set()
        if fields:
            have = {d[0] for d in self.con.execute("SELECT * FROM samples LIMIT 0").description}
            fields &= have
        p = _Parser(expr, self.genes(), fields)
        where = p.parse()
        return Compiled(where, p.params, p.used, p.atoms, [w for a in p.atoms if (w := self._never(a))])

    def _never(self, a: Atom) -> str | None:
        """Why a condition can match no sample of this cohort, if it cannot (a warning, not an error: the
        query is valid, its answer is empty for a reason the user should see)."""
        col = f'"{a.field}"'
        called = self.con.execute("SELECT count(*) FROM calls WHERE gene = ? AND status = 'called'",
                                  [a.gene]).fetchone()[0]
        if not called and a.field not in ("status", "input_file", "outside_call"):
            return f"{a.gene} is called for no sample of this cohort: '{a.gene} {a.field}' matches nothing"
        if a.field == "activity_score" or isinstance(a.value, float):
            n = self.con.execute(f"SELECT count(*) FROM calls WHERE gene = ? AND TRY_CAST({col} AS DOUBLE) "
                                 "IS NOT NULL", [a.gene]).fetchone()[0]
            if not n:
                return f"{a.gene} has no {a.field} in this cohort (not an activity-score gene?): the condition " \
                       "matches nothing"
            return None
        if a.op == "=":
            n = self.con.execute(f"SELECT count(*) FROM calls WHERE gene = ? AND lower({col}) = lower(?)",
                                 [a.gene, a.value]).fetchone()[0]
            if not n:
                seen = [r[0] for r in self.con.execute(
                    f"SELECT {col}, count(*) FROM calls WHERE gene = ? AND {col} IS NOT NULL GROUP BY 1 "
                    "ORDER BY 2 DESC LIMIT 6", [a.gene]).fetchall()]
                return (f"no sample has {a.gene} {a.field} '{a.value}'"
                        + (f"; values present: {', '.join(map(str, seen))}" if seen else ""))
        return None

    def filter(self, expr: str):
        """Samples matching the expression, with the diplotype and phenotype of every gene it names; also the
        total number of samples and warnings for conditions that can match no sample."""
        c = self.compile(expr)
        cols = ["sample"]
        select = ["sample"]
        params: list = []
        for g in c.genes:
            for field in ("diplotype", "phenotype"):
                select.append(f"max(CASE WHEN gene = ? THEN {field} END)")
                params.append(g)
                cols.append(f"{g} {field}")
        query = (f"SELECT {', '.join(select)} FROM calls WHERE {c.where} "
                 "GROUP BY sample ORDER BY min(file_row_number)")
        rows = self.con.execute(query, params + c.params).fetchall()
        total = self.con.execute("SELECT count(DISTINCT sample) FROM calls").fetchone()[0]
        return cols, rows, total, c.warnings
