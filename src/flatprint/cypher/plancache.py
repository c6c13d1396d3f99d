"""A cache of parsed and analyzed queries by shape: the same text with other literals skips the
parser and the analyzer.

neuprint-python sends thousands of queries that differ only in their literals (body ids, type
names, ROI lists). :func:`prepare` tokenizes the text and looks its *shape* up: the token stream
with every string and number literal replaced by its token type. On a miss the text is parsed and
analyzed as always (errors keep the text's own line and column) and the tree is kept as a template
whose literals are slots. On a hit the new text's literal values are bound into the template's
slots: the result is the tree that parsing the new text would give, so every later stage (rewriter,
planner, SQL generation, execution) sees exactly what it sees without the cache.

Why slots rather than ``$parameters``: sqlgen renders a literal and a parameter differently
(value families, LIMIT pushdown), so turning literals into parameters could change the SQL. The
template's slots are, in effect, parameters bound back as literals.

What stays in the shape key (a literal is "pinned" and its value is part of the key):

- everything that is not a string or number token: keywords as written, names, labels, property
  keys, map keys, parameters, operators; ``true``/``false``/``null`` are keywords;
- the token type of every literal (``1`` and ``1.0`` and ``'1'`` are different shapes), hence the
  length and element types of list literals;
- literals in ``SKIP``/``LIMIT`` (the analyzer checks their values);
- numbers that never become a literal node (hop ranges ``*1..3``, ``-(5)``);
- the arguments of ``CALL`` (the query text of ``apoc.cypher.runTimeboxed`` is parsed with the
  outer query).

Column names of un-aliased items (``RETURN n.type + 'x'``) are the text as written; a hit cuts
them from the new text. An integer literal beyond 64 bits takes the uncached path, which refuses
it. Runtime errors on a hit may cite the template's positions (its literals can differ in width).

The cache is a bounded LRU (:data:`DEFAULT_SIZE` shapes, ``FLATPRINT_PLAN_CACHE_SIZE``; texts
longer than :data:`MAX_TEXT` characters bypass it) guarded by a lock (the server runs queries on a
thread pool); ``FLATPRINT_PLAN_CACHE=0`` turns it off.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flatprint.cypher import ast
from flatprint.cypher.analyzer import analyze
from flatprint.cypher.parser import parse
from flatprint.cypher.tokens import _TOKEN_PATTERN, Token, TokenType, _unescape, tokenize

__all__ = [
    "PlanCache",
    "prepare",
    "default_cache",
    "cache_enabled",
    "DEFAULT_SIZE",
    "MAX_TEXT",
    "ENV_SWITCH",
    "ENV_SIZE",
]

DEFAULT_SIZE = 512
# Longer texts (long literal lists: each length is a shape of its own) are parsed afresh: an entry
# takes about 50 bytes per character of text, so the full cache stays near 100 MB at most.
MAX_TEXT = 4096
ENV_SWITCH = "FLATPRINT_PLAN_CACHE"
ENV_SIZE = "FLATPRINT_PLAN_CACHE_SIZE"
_LITERAL_TOKENS = (TokenType.STRING, TokenType.INTEGER, TokenType.FLOAT)
_INT64_MAX = 2**63 - 1
# a literal's place in the shape: no other token's text starts with a quote (strings are literals)
_MARKERS = {TokenType.STRING: "'s", TokenType.INTEGER: "'i", TokenType.FLOAT: "'f"}


@dataclass(frozen=True)
class _Template:
    """A parsed, analyzed query whose literal slots take other values."""

    query: ast.Query
    slots: dict[tuple[int, int], tuple[int, bool]]  # node position -> (literal index, negated)
    columns: dict[tuple[int, int], tuple[int, int]]  # un-aliased item position -> (first, last token)
    dirty: frozenset[int]  # ids of the template's nodes that hold a slot or an un-aliased item
    reanalyze: bool  # a UNION whose column names come from the text: the analyzer compares them


class PlanCache:
    """Shapes -> templates, least recently used first out, safe to share between threads."""

    def __init__(self, size: int = DEFAULT_SIZE):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"plan cache size must be a positive integer, got {size!r}")
        self.size = size
        self._lock = threading.Lock()
        self._pins: OrderedDict[tuple, tuple[int, ...]] = OrderedDict()  # shape -> pinned literal indexes
        self._templates: OrderedDict[tuple, _Template] = OrderedDict()  # (shape, pinned values) -> template
        self._texts: OrderedDict[str, ast.Query] = OrderedDict()  # exact text -> its tree
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._templates)

    def clear(self) -> None:
        with self._lock:
            self._pins.clear()
            self._texts.clear()
            self._templates.clear()
            self.hits = self.misses = 0

    def prepare(self, text: str) -> ast.Query:
        """The analyzed tree of ``text``, from the cache when a query of its shape was seen."""
        if len(text) > MAX_TEXT:
            query = parse(text)
            analyze(query)
            return query
        with self._lock:
            query = self._texts.get(text)
            if query is not None:
                self._texts.move_to_end(text)
                self.hits += 1
                return query
        scanned = _scan(text)
        if scanned is not None:  # the shape without Token objects: a hit needs only the literals
            shape, values, spans = scanned
            template = self._lookup(shape, values)
            if template is not None and not _too_large(values, template):
                return self._hit(template, text, values, spans)
        tokens = tokenize(text)
        literals, shape = _shape_of(tokens)
        values = [tokens[index].value for index in literals]
        template = self._lookup(shape, values)
        if template is not None and not _too_large(values, template):
            return self._hit(template, text, values, [(token.offset, token.end) for token in tokens])
        query = parse(text)
        analyze(query)
        template, pins = _make_template(query, text, tokens, literals)
        key = (shape, tuple(tokens[literals[k]].value for k in pins))
        self._remember(text, query)
        with self._lock:
            self.misses += 1
            self._pins[shape] = pins
            self._pins.move_to_end(shape)
            self._templates[key] = template
            self._templates.move_to_end(key)
            while len(self._templates) > self.size:
                self._templates.popitem(last=False)
            while len(self._pins) > self.size:
                self._pins.popitem(last=False)
        return query

    def _lookup(self, shape: tuple, values: list) -> _Template | None:
        with self._lock:
            pins = self._pins.get(shape)
            if pins is None:
                return None
            key = (shape, tuple(values[k] for k in pins))
            template = self._templates.get(key)
            if template is not None:
                self._templates.move_to_end(key)
                self._pins.move_to_end(shape)
            return template

    def _hit(self, template: _Template, text: str, values: list, spans: list[tuple[int, int]]) -> ast.Query:
        with self._lock:
            self.hits += 1
        query = _bind(template, text, values, spans)
        if template.reanalyze:
            analyze(query)
        self._remember(text, query)
        return query

    def _remember(self, text: str, query: ast.Query) -> None:
        """Keep the tree of this very text too: a text sent again skips even the tokenizer."""
        with self._lock:
            self._texts[text] = query
            self._texts.move_to_end(text)
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)


def _shape_of(tokens: list[Token]) -> tuple[list[int], tuple[str, ...]]:
    """The indexes of the literal tokens, and the token texts with each literal's replaced by a marker."""
    literals, shape = [], []
    string, integer, double = TokenType.STRING, TokenType.INTEGER, TokenType.FLOAT
    for index, token in enumerate(tokens):
        kind = token.type  # compared by identity: hashing an enum member runs Python code
        if kind is string or kind is integer or kind is double:
            literals.append(index)
            shape.append(_MARKERS[kind])
        else:
            shape.append(token.text)
    return literals, tuple(shape)


_SKIPPED = frozenset(("space", "line_comment", "block_comment"))
_LITERAL_KINDS = {"string": "'s", "integer": "'i", "hex": "'i", "octal": "'i", "float": "'f"}


def _scan(text: str) -> tuple[tuple[str, ...], list, list[tuple[int, int]]] | None:
    """What :func:`_shape_of` of ``tokenize(text)`` gives (the shape; the literals' values) and every
    token's (start, end), without building Token objects or line/column positions: ~4x faster than
    the tokenizer, which a hit does not need. None for any text the tokenizer would refuse or that
    holds a literal it decodes specially (an invalid escape, an infinite float): those take the
    tokenizer's path and its errors."""
    shape: list[str] = []
    values: list = []
    spans: list[tuple[int, int]] = []
    position = 0
    for match in _TOKEN_PATTERN.finditer(text):
        start, end = match.span()
        if start != position:
            return None  # a character no token starts with: the tokenizer reports it
        position = end
        kind = match.lastgroup
        if kind in _SKIPPED:
            continue
        raw = match.group()
        spans.append((start, end))
        marker = _LITERAL_KINDS.get(kind)
        if marker is None:
            if kind == "unterminated_comment" or raw in ("``", "$``"):
                return None  # the tokenizer's errors
            shape.append(raw)
            continue
        shape.append(marker)
        if kind == "string":
            try:
                values.append(_unescape(raw, start, _refuse))
            except _Refused:
                return None
        elif kind == "integer":
            values.append(int(raw))
        elif kind == "float":
            number = float(raw)
            if number in (float("inf"), float("-inf")):
                return None
            values.append(number)
        else:
            values.append(int(raw[2:], 16 if kind == "hex" else 8))
    if position != len(text):
        return None
    shape.append("")  # the EOF token's text
    spans.append((len(text), len(text)))
    return tuple(shape), values, spans


class _Refused(Exception):
    """A literal the tokenizer refuses (its error comes from :func:`tokenize`)."""


def _refuse(*_args) -> _Refused:
    return _Refused()


def _too_large(values: list, template: _Template) -> bool:
    """An integer slot beyond 64 bits: the parser must see (and refuse) it."""
    return any(
        isinstance(values[k], int) and not isinstance(values[k], bool) and values[k] > _INT64_MAX
        for k, _ in template.slots.values()
    )


def _make_template(
    query: ast.Query, text: str, tokens: list[Token], literals: list[int]
) -> tuple[_Template, tuple[int, ...]]:
    """The slots of ``query`` (parsed from ``text``) and the literal indexes that stay in the key."""
    at_position: dict[tuple[int, int], tuple[int, bool]] = {}
    for k, index in enumerate(literals):
        token = tokens[index]
        at_position[(token.line, token.column)] = (k, False)
        before = tokens[index - 1] if index else None
        if before is not None and before.type is TokenType.MINUS and token.type is not TokenType.STRING:
            at_position[(before.line, before.column)] = (k, True)  # '-5' folds into Literal(-5) at the '-'
    token_at = {(token.line, token.column): i for i, token in enumerate(tokens)}
    # the end of input is a zero-width token at the text's end: never the last token of a column
    token_ending = {token.end: i for i, token in enumerate(tokens) if token.end > token.offset}

    slots: dict[tuple[int, int], tuple[int, bool]] = {}
    columns: dict[tuple[int, int], tuple[int, int]] = {}
    excluded: set[int] = set()  # ids of literal nodes that must keep their value
    for node in _walk_outer(query):
        if isinstance(node, (ast.With, ast.Return)):
            for bound in (node.skip, node.limit):
                if bound is not None:
                    excluded.update(id(n) for n in bound.walk())
        elif isinstance(node, ast.Call):
            for argument in node.arguments:
                excluded.update(id(n) for n in argument.walk())
        elif isinstance(node, ast.ProjectionItem) and node.alias is None:
            position = (node.line, node.column)
            first = token_at.get(position)
            last = token_ending.get(tokens[first].offset + len(node.source_text)) if first is not None else None
            if last is None:
                raise AssertionError(f"cannot find the text of {node.source_text!r} among the tokens")
            columns[position] = (first, last)
    for node in _walk_outer(query):
        if not isinstance(node, ast.Literal) or node.kind not in ("integer", "float", "string") or id(node) in excluded:
            continue
        position = (node.line, node.column)
        found = at_position.get(position)
        if found is None:
            continue
        k, negated = found
        value = tokens[literals[k]].value
        if node.value == (-value if negated else value) and type(node.value) is type(value):
            slots[position] = found
    slotted = {k for k, _ in slots.values()}
    pins = tuple(k for k in range(len(literals)) if k not in slotted)
    dirty: set[int] = set()
    _mark_dirty(query, set(slots) | set(columns), dirty)
    reanalyze = len(query.parts) > 1 and bool(columns)
    return _Template(query, slots, columns, frozenset(dirty), reanalyze), pins


def _walk_outer(node: ast.Node):
    """Every node of the query but those of a CALL's inner query (its literals are the string's)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        children = list(current.children())
        if isinstance(current, ast.Call) and current.inner_query is not None:
            children = [c for c in children if c is not current.inner_query]
        stack.extend(reversed(children))


def _mark_dirty(node: ast.Node, positions: set, dirty: set[int]) -> bool:
    changed = False
    if not (isinstance(node, ast.Call) and node.inner_query is not None):
        for child in node.children():
            changed = _mark_dirty(child, positions, dirty) or changed
    else:
        for child in node.children():
            if child is not node.inner_query:
                changed = _mark_dirty(child, positions, dirty) or changed
    if (isinstance(node, ast.Literal) or (isinstance(node, ast.ProjectionItem) and node.alias is None)) and (
        node.line,
        node.column,
    ) in positions:
        changed = True
    if changed:
        dirty.add(id(node))
    return changed


def _bind(template: _Template, text: str, values: list, spans: list[tuple[int, int]]) -> ast.Query:
    """The template with the new text's literal values (in text order) and column texts (``spans``:
    every token's (start, end) offsets)."""
    dirty = template.dirty

    def value_of(item):
        if isinstance(item, tuple):
            return tuple(value_of(element) for element in item)
        if isinstance(item, ast.Node) and id(item) in dirty:
            return rebuild(item)
        return item

    def rebuild(node: ast.Node) -> ast.Node:
        position = (node.line, node.column)
        if isinstance(node, ast.Literal):
            slot = template.slots.get(position)
            if slot is not None:
                k, negated = slot
                value = values[k]
                return ast.Literal(-value if negated else value, line=node.line, column=node.column)
            return node
        changes = {}
        for f in dataclasses.fields(node):
            if not f.init or f.name in ("line", "column"):
                continue
            old = getattr(node, f.name)
            new = value_of(old)
            if new is not old:
                changes[f.name] = new
        if isinstance(node, ast.ProjectionItem) and position in template.columns:
            first, last = template.columns[position]
            changes["source_text"] = text[spans[first][0] : spans[last][1]]
        return dataclasses.replace(node, **changes) if changes else node

    return rebuild(template.query) if id(template.query) in dirty else template.query


def cache_enabled() -> bool:
    """False when ``FLATPRINT_PLAN_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _size_from_environment() -> int:
    raw = os.environ.get(ENV_SIZE)
    if raw is None or not raw.strip():
        return DEFAULT_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"${ENV_SIZE} must be a positive integer, got {raw!r}")
    return size


_default: PlanCache | None = None
_default_lock = threading.Lock()


def default_cache() -> PlanCache:
    """The process's shared cache, made on first use (sized by ``FLATPRINT_PLAN_CACHE_SIZE``)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PlanCache(_size_from_environment())
    return _default


def prepare(text: str, cache: PlanCache | bool | None = None) -> ast.Query:
    """Parse and analyze ``text``: through ``cache`` (a PlanCache), the shared cache (None or True,
    unless ``FLATPRINT_PLAN_CACHE=0``), or without any cache (False)."""
    if cache is False or (cache is None and not cache_enabled()):
        query = parse(text)
        analyze(query)
        return query
    if cache is None or cache is True:
        cache = default_cache()
    return cache.prepare(text)
