"""The Cypher engine's stages stay separate: SQL text is written only by its SQL generator
(flatprint/cypher/sqlgen/), and no stage module grows past ~600 lines (issue 16).

A string literal in any other module of flatprint.cypher that holds a keyword only SQL has (SELECT,
FROM, JOIN, GROUP BY, BETWEEN, ...) or a DuckDB cast (``::DOUBLE``) fails the check; docstrings are
prose and do not count. Cypher's own keywords (WHERE, ORDER BY, LIMIT, DISTINCT, CASE) are shared
with SQL and appear in the parser's messages, so they are not part of the test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

CYPHER = Path(__file__).resolve().parents[1] / "src" / "flatprint" / "cypher"
GENERATOR = "sqlgen"
SQL_ONLY = re.compile(
    r"\b(SELECT|FROM|JOIN|GROUP BY|HAVING|BETWEEN|DESCRIBE|OFFSET|NULLS (?:FIRST|LAST)|INSERT|PRAGMA)\b"
    r"|::[A-Z]+\b"
)
#: the parser and the syntax tree may stay whole; every other stage is cut below this
MAX_LINES = 650
WHOLE = {"parser.py", "ast.py"}


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_outside_generator(package: Path) -> list[str]:
    """``file:line: text`` of every string literal with SQL in the package's modules outside sqlgen."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if GENERATOR in path.relative_to(package).parts[:1] or path.stem == GENERATOR:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if SQL_ONLY.search(node.value):
                    found.append(f"{path.relative_to(package)}:{node.lineno}: {node.value[:80]!r}")
    return found


def test_only_the_sql_generator_writes_sql():
    found = sql_outside_generator(CYPHER)
    assert not found, "SQL text outside flatprint/cypher/sqlgen/ (move it there):\n" + "\n".join(found)


def test_the_check_finds_sql(tmp_path):
    """The check sees SQL in plain and f-strings, in any module but the generator, and not in prose."""
    package = tmp_path / "cypher"
    (package / GENERATOR).mkdir(parents=True)
    (package / "planner.py").write_text(
        '"""Plans a MATCH; SELECT in a docstring is prose."""\n'
        "def plan(alias):\n"
        '    """Neither is this FROM."""\n'
        '    where = "n.bodyId = 1"\n'
        '    return f"SELECT bodyId FROM segments {alias}"\n'
    )
    (package / "columnar.py").write_text('CAST = "to_json(x::DOUBLE)"\nMESSAGE = "invalid Cypher: WHERE"\n')
    (package / GENERATOR / "statements.py").write_text('SQL = "SELECT roi FROM rois"\n')
    assert sql_outside_generator(package) == [
        "columnar.py:1: 'to_json(x::DOUBLE)'",
        "planner.py:5: 'SELECT bodyId FROM segments '",
    ]


def test_stage_modules_stay_small():
    long = {
        path.name: lines
        for path in CYPHER.rglob("*.py")
        if path.name not in WHOLE and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"Cypher stage modules over {MAX_LINES} lines (cut them by responsibility): {long}"
