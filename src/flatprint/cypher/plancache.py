"""A cache of parsed and analyzed queries by shape: the same text with other literals skips the
parser and the analyzer.

neuprint-python sends thousands of queries that differ only in their literals (body ids, type
names, ROI lists). :func:`prepare` tokenizes the text and looks its *shape* up: the token stream
with every string and number literal replaced by its token type, and every list of integers or of
strings by one marker. On a miss the text is parsed and analyzed as always (errors keep the text's
own line and column) and the tree is kept as a template whose literals and lists are slots. On a
hit the new text's literal values are bound into the template's slots: the result is the tree that
parsing the new text would give, so every later stage (rewriter, planner, SQL generation,
execution) sees exactly what it sees without the cache.

Why slots rather than ``$parameters``: sqlgen renders a literal and a parameter differently
(value families, LIMIT pushdown), so turning literals into parameters could change the SQL. The
template's slots are, in effect, parameters bound back as literals.

A list literal of integer literals only, or of string literals only (``[319488, 483330]``,
``['EB', "FB"]``: at least one item, no sign, no expression) is ONE slot of any length:
``[1, 2]`` and ``[7, 8, 9]`` are one shape (neuprint-python's body id lists take every length).
That is exact because the parser makes such a list a ListLiteral of Literals whatever its length,
and the analyzer looks only at its being a non-empty list whose items have one type (never at the
length or the values). ``[]``, ``[-1, 2]``, ``[1, 2.5]``, ``[1, 'a']`` and ``[[1], [2, 3]]``'s
outer list keep one slot per literal, so their length and item types stay in the key (an empty
list's items have no type; a minus sign makes an expression); the inner lists of a nested list are
list slots each. Brackets after a value (a subscript ``m['post']``) keep one slot per literal; a
folded list that did not parse to a list of those literals (``LIMIT [1]``, in a CALL) is pinned.

What stays in the shape key (a literal is "pinned" and its value is part of the key):

- everything that is not a string or number token: keywords as written, names, labels, property
  keys, map keys, parameters, operators; ``true``/``false``/``null`` are keywords;
- the token type of every literal (``1`` and ``1.0`` and ``'1'`` are different shapes), hence the
  length and element types of list literals other than the list slots above;
- literals in ``SKIP``/``LIMIT`` (the analyzer checks their values);
- numbers that never become a literal node (hop ranges ``*1..3``, ``-(5)``);
- the arguments of ``CALL`` (the query text of ``apoc.cypher.runTimeboxed`` is parsed with the
  outer query).

Column names of un-aliased items (``RETURN n.type + 'x'``, ``RETURN [1, 2]``) are the text as
written; a hit cuts them from the new text. An integer literal beyond 64 bits (also in a list)
takes the uncached path, which refuses it. Runtime errors on a hit may cite the template's
positions (its literals can differ in width); the items of a list slot all cite the list's.

The cache is a bounded LRU (:data:`DEFAULT_SIZE` shapes, ``FLATPRINT_PLAN_CACHE_SIZE``) guarded by
a lock (the server runs queries on a thread pool); ``FLATPRINT_PLAN_CACHE=0`` turns it off. An
entry's memory grows with the text outside its list slots, which is at most :data:`MAX_TEXT`
characters: a longer text is cached only when the rest (its list slots left out) is that short,
and its entry keeps neither the text nor the lists (the template's list slots and un-aliased
column texts are emptied; a hit fills them from the new text), and the exact-text level keeps
texts of at most MAX_TEXT characters. Other long texts bypass the cache.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flatprint.cypher import ast
from flatprint.cypher.analyzer import analyze
from flatprint.cypher.errors import CypherError
from flatprint.cypher.parser import parse
from flatprint.cypher.shapes import inner_query_strings, outside_lists, scan, shape_of
from flatprint.cypher.tokens import Token, TokenType, tokenize

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
# The most characters of a text outside its list slots that an entry keeps: an entry takes about
# 50 bytes per such character, so the full cache stays near 100 MB at most.
MAX_TEXT = 4096
ENV_SWITCH = "FLATPRINT_PLAN_CACHE"
ENV_SIZE = "FLATPRINT_PLAN_CACHE_SIZE"
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class _Template:
    """A parsed, analyzed query whose literal slots take other values."""

    query: ast.Query  # list slots hold no items and the items in ``columns`` no text: a hit fills them
    slots: dict[tuple[int, int], tuple[int, bool]]  # literal node position -> (value index, negated)
    lists: dict[tuple[int, int], int]  # list literal position -> value index (a tuple of its items)
    columns: dict[tuple[int, int], tuple[int, int]]  # item position -> its text's (first, last element)
    dirty: frozenset[int]  # ids of the template's nodes that hold a slot or an item in ``columns``
    reanalyze: bool  # a UNION with column names from the text: the analyzer compares them
    # CALL position -> (the template of its inner query, the value index of its query string, where
    # the inner query's values start among the values, how many there are)
    calls: dict = dataclasses.field(default_factory=dict)


class PlanCache:
    """Shapes -> templates, least recently used first out, safe to share between threads."""

    def __init__(self, size: int = DEFAULT_SIZE):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"plan cache size must be a positive integer, got {size!r}")
        self.size = size
        self._lock = threading.Lock()
        self._pins: OrderedDict[tuple, tuple[int, ...]] = OrderedDict()  # shape -> pinned literal indexes
        self._templates: OrderedDict[tuple, _Template] = OrderedDict()  # (shape, pinned values) -> template
        self._texts: OrderedDict[str, ast.Query] = OrderedDict()  # exact text (<= MAX_TEXT) -> its tree
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
        long = len(text) > MAX_TEXT
        if long and "[" not in text:
            return _parse_and_analyze(text)  # no list to leave out: too long to keep
        if not long:
            with self._lock:
                query = self._texts.get(text)
                if query is not None:
                    self._texts.move_to_end(text)
                    self.hits += 1
                    return query
        scanned = scan(text)
        if scanned is not None:  # the shape without Token objects: a hit needs only the literals
            shape, values, spans = scanned
            key_shape, key_values, inner = _with_inner_queries(shape, values)
            template = self._lookup(key_shape, key_values)
            if template is not None and not _too_large(key_values, template):
                return self._hit(template, text, key_values, spans, inner)
            if long and _outside_lists(text, shape, spans, inner) > MAX_TEXT:
                return _parse_and_analyze(text)
        elif long:
            return _parse_and_analyze(text)  # the tokenizer refuses it: the parser says why
        tokens = tokenize(text)
        shape, values, spans, element_of, value_tokens = shape_of(tokens)
        key_shape, key_values, inner = _with_inner_queries(shape, values)
        template = self._lookup(key_shape, key_values)
        if template is not None and not _too_large(key_values, template):
            return self._hit(template, text, key_values, spans, inner)
        query = parse(text, tokens=tokens)
        analyze(query)
        made = _make_template(query, text, tokens, values, spans, element_of, value_tokens, inner)
        if made is None:
            return query
        template, pins, kept = made
        if kept > MAX_TEXT:
            return query  # too much text outside the list slots to keep (see MAX_TEXT)
        shape, values = key_shape, key_values
        key = (shape, tuple(values[k] for k in pins))
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

    def _hit(
        self, template: _Template, text: str, values: list, spans: list[tuple[int, int]], inner: dict
    ) -> ast.Query:
        with self._lock:
            self.hits += 1
        query = _bind(template, text, values, spans, inner)
        if template.reanalyze:
            try:
                analyze(query)
            except CypherError:
                return _parse_and_analyze(text)  # the error at this text's own line and column
        self._remember(text, query)
        return query

    def _remember(self, text: str, query: ast.Query) -> None:
        """Keep the tree of this very text too: a text sent again skips even the tokenizer. Not for
        texts over MAX_TEXT characters (the entry would keep the text and its lists)."""
        if len(text) > MAX_TEXT:
            return
        with self._lock:
            self._texts[text] = query
            self._texts.move_to_end(text)
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)


def _parse_and_analyze(text: str) -> ast.Query:
    query = parse(text)
    analyze(query)
    return query


def _too_large(values: list, template: _Template) -> bool:
    """An integer slot beyond 64 bits: the parser must see (and refuse) it."""
    for k, _ in template.slots.values():
        value = values[k]
        if isinstance(value, int) and not isinstance(value, bool) and value > _INT64_MAX:
            return True
    for k in template.lists.values():
        run = values[k]
        if type(run[0]) is int and max(run) > _INT64_MAX:
            return True
    return any(_too_large(values[start : start + count], inner) for inner, _, start, count in template.calls.values())


def _same_items(items: tuple, run: tuple) -> bool:
    """Are ``items`` the literals of ``run``, value by value and of the same types?"""
    return len(items) == len(run) and all(
        type(item) is ast.Literal and type(item.value) is type(value) and item.value == value
        for item, value in zip(items, run)
    )


def _make_template(
    query: ast.Query,
    text: str,
    tokens: list[Token],
    values: list,
    spans: list[tuple[int, int]],
    element_of: list[int],
    value_tokens: list[tuple[int, int]],
    inner: dict | None = None,
) -> tuple[_Template, tuple[int, ...], int] | None:
    """The template of ``query`` (parsed from ``text``; the rest is :func:`shape_of` ``tokens``),
    the value indexes that stay in the key (among the values with the inner queries' after them,
    :func:`_with_inner_queries`' ``inner``), and how many characters of the text are outside its
    list slots; None when an item's text does not fall on whole shape elements or an inner query
    cannot have a template."""
    inner = inner or {}
    at_position: dict[tuple[int, int], tuple[int, bool]] = {}
    list_at: dict[tuple[int, int], int] = {}
    for k, (first, last) in enumerate(value_tokens):
        token = tokens[first]
        if first != last:  # a folded list: its '[' token
            list_at[(token.line, token.column)] = k
            continue
        at_position[(token.line, token.column)] = (k, False)
        before = tokens[first - 1] if first else None
        if before is not None and before.type is TokenType.MINUS and token.type is not TokenType.STRING:
            at_position[(before.line, before.column)] = (k, True)  # '-5' folds into Literal(-5) at the '-'
    token_at = {(token.line, token.column): i for i, token in enumerate(tokens)}
    # the end of input is a zero-width token at the text's end: never the last token of a column
    token_ending = {token.end: i for i, token in enumerate(tokens) if token.end > token.offset}

    def elements_of(item: ast.ProjectionItem) -> tuple[int, int] | None:
        """The first and last shape element of an item's text (None: not on whole elements)."""
        first = token_at.get((item.line, item.column))
        last = token_ending.get(tokens[first].offset + len(item.source_text)) if first is not None else None
        if last is None:
            raise AssertionError(f"cannot find the text of {item.source_text!r} among the tokens")
        first_element, last_element = element_of[first], element_of[last]
        if spans[first_element][0] != tokens[first].offset or spans[last_element][1] != tokens[last].end:
            return None  # starts or ends inside a folded list: cannot be (a list is one expression)
        return first_element, last_element

    slots: dict[tuple[int, int], tuple[int, bool]] = {}
    lists: dict[tuple[int, int], int] = {}
    columns: dict[tuple[int, int], tuple[int, int]] = {}
    items: list[ast.ProjectionItem] = []
    excluded: set[int] = set()  # ids of literal nodes that must keep their value
    calls: dict = {}
    pinned_inner: list[int] = []  # value indexes (among all) an inner query's template keeps in the key
    inner_chars = 0  # characters of inner queries' list slots
    for node in _walk_outer(query):
        if isinstance(node, (ast.With, ast.Return)):
            for bound in (node.skip, node.limit):
                if bound is not None:
                    excluded.update(id(n) for n in bound.walk())
        elif isinstance(node, ast.Call):
            arguments = node.arguments
            string = arguments[0] if arguments and node.inner_query is not None else None
            inside = at_position.get((string.line, string.column)) if string is not None else None
            if inside is not None and inside[0] in inner:  # the query text: a slot, its query a template
                made = _inner_template(node, string, inside[0], inner[inside[0]])
                if made is None:
                    return None
                calls[(node.line, node.column)], inner_pins, inner_kept = made
                pinned_inner.extend(inner_pins)
                inner_chars += len(string.value) - inner_kept
                arguments = arguments[1:]
            for argument in arguments:
                excluded.update(id(n) for n in argument.walk())
        elif isinstance(node, ast.ProjectionItem):
            items.append(node)
        if id(node) in excluded:
            continue
        position = (node.line, node.column)
        if isinstance(node, ast.ListLiteral):
            k = list_at.get(position)
            if k is not None and _same_items(node.items, values[k]):
                lists[position] = k
            continue
        if not isinstance(node, ast.Literal) or node.kind not in ("integer", "float", "string"):
            continue
        found = at_position.get(position)
        if found is None:
            continue
        k, negated = found
        value = values[k]
        if node.value == (-value if negated else value) and type(node.value) is type(value):
            slots[position] = found
    slotted = {k for k, _ in slots.values()} | set(lists.values())
    if any(inner_k not in slotted for _, inner_k, _, _ in calls.values()):
        return None  # a query string that did not become a slot: its text must stay in the key
    pins = tuple(k for k in range(len(values)) if k not in slotted) + tuple(pinned_inner)
    list_spans = [spans[element_of[value_tokens[k][0]]] for k in lists.values()]
    kept = len(text) - sum(end - start for start, end in list_spans) - inner_chars

    def holds_slot(node: ast.Node) -> bool:
        position = (node.line, node.column)
        if isinstance(node, ast.Literal):
            return position in slots
        if isinstance(node, ast.ListLiteral):
            return position in lists
        return isinstance(node, ast.Call) and position in calls

    # An item's text: an un-aliased item's names its column; an aliased item's is cut from the new
    # text too when it holds a slot (the parser's tree has it; for a long list it is long).
    with_slots: set[int] = set()
    _mark_dirty(query, holds_slot, with_slots)
    for item in items:
        if item.alias is None or id(item) in with_slots:
            found = elements_of(item)
            if found is None:
                return None
            columns[(item.line, item.column)] = found

    def marked(node: ast.Node) -> bool:
        return holds_slot(node) or (isinstance(node, ast.ProjectionItem) and (node.line, node.column) in columns)

    query_strings = {template_k for _, template_k, _, _ in calls.values()}

    def emptied(node: ast.Node) -> ast.Node | None:
        if isinstance(node, ast.ListLiteral) and (node.line, node.column) in lists:
            return ast.ListLiteral((), line=node.line, column=node.column)
        slot = slots.get((node.line, node.column)) if isinstance(node, ast.Literal) else None
        if slot is not None and slot[0] in query_strings:  # a hit writes the new text's
            return ast.Literal("", line=node.line, column=node.column)
        return None

    # The kept tree holds neither a list slot's items nor the items' texts cut from the text (for a
    # long text both are long; a hit makes both afresh), so an entry's size follows the text outside
    # its lists.
    dirty: set[int] = set()
    _mark_dirty(query, marked, dirty)
    kept_query = _rebuild(
        query,
        frozenset(dirty),
        emptied,
        lambda position: "" if position in columns else None,
        lambda node: None if (node.line, node.column) in calls else node.inner_query,  # a hit binds it
    )
    dirty = set()
    _mark_dirty(kept_query, marked, dirty)
    reanalyze = len(query.parts) > 1 and any(item.alias is None for item in items)
    reanalyze = reanalyze or any(template.reanalyze for template, _, _, _ in calls.values())
    return _Template(kept_query, slots, lists, columns, frozenset(dirty), reanalyze, calls), pins, kept


def _with_inner_queries(shape: tuple, values: list) -> tuple[tuple, list, dict]:
    """The shape and values to key on: ``shape`` and ``values``, then for each query string of a CALL
    (:func:`shapes.inner_query_strings`) the shape and values of its text, so that the inner query's
    literals are slots too; and those parts by the string's value index: (the string's shape,
    values, spans and where its values start among all values). A string :func:`scan` cannot read
    stays a plain literal (pinned by the template, as before)."""
    inner: dict = {}
    key_shape, key_values = list(shape), list(values)
    for k in inner_query_strings(shape):
        scanned = scan(values[k])
        if scanned is None:
            continue
        inner_shape, inner_values, inner_spans = scanned
        inner[k] = (inner_shape, inner_values, inner_spans, len(key_values))
        key_shape.extend(("", k, *inner_shape))
        key_values.extend(inner_values)
    if not inner:
        return shape, values, inner
    return tuple(key_shape), key_values, inner


def _inner_template(call: ast.Call, string: ast.Literal, k: int, part: tuple):
    """((the template of the CALL's inner query, k, where its values start, how many), its pinned
    value indexes among all values, its characters outside list slots), or None."""
    inner_shape, inner_values, inner_spans, start = part
    text = string.value
    tokens = tokenize(text, start_line=string.line, start_column=string.column + 1)  # as the parser does
    shape, values, spans, element_of, value_tokens = shape_of(tokens)
    if shape != inner_shape or values != inner_values:
        return None
    made = _make_template(call.inner_query, text, tokens, values, spans, element_of, value_tokens)
    if made is None:
        return None
    template, pins, kept = made
    if template.calls:
        return None  # a CALL inside an inner query: keep it simple, no template
    return (template, k, start, len(values)), [start + p for p in pins], kept


def _outside_lists(text: str, shape: tuple, spans: list, inner: dict) -> int:
    """:func:`shapes.outside_lists` with the list slots of inner queries left out too."""
    outside = outside_lists(text, shape, spans)
    for inner_shape, _values, inner_spans, _ in inner.values():
        inner_text_length = inner_spans[-1][1]
        outside -= inner_text_length - outside_lists("x" * inner_text_length, inner_shape, inner_spans)
    return outside


def _walk_outer(node: ast.Node):
    """Every node of the query but those of a CALL's inner query (its literals are the string's)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if type(current) is ast.Literal:
            continue  # no children (a long list has many literals)
        children = list(current.children())
        if isinstance(current, ast.Call) and current.inner_query is not None:
            children = [c for c in children if c is not current.inner_query]
        stack.extend(reversed(children))


def _mark_dirty(node: ast.Node, marked, dirty: set[int]) -> bool:
    """Add to ``dirty`` the ids of the nodes ``marked`` and of all their ancestors (outside CALL inner
    queries)."""
    if type(node) is ast.Literal or (type(node) is ast.ListLiteral and marked(node)):
        if marked(node):  # no children, or a list slot's literals (never slots themselves)
            dirty.add(id(node))
            return True
        return False
    changed = False
    inner = node.inner_query if isinstance(node, ast.Call) else None
    for child in node.children():
        if child is not inner or inner is None:
            changed = _mark_dirty(child, marked, dirty) or changed
    if changed or marked(node):
        dirty.add(id(node))
        return True
    return False


def _rebuild(root: ast.Node, dirty: frozenset[int], leaf, column_text, inner_query) -> ast.Node:
    """``root`` with the nodes in ``dirty`` made afresh: a node ``leaf`` replaces (it returns None
    for the others), an item's text from ``column_text(position)`` (None: unchanged), a CALL's inner
    query from ``inner_query(call)``."""

    def value_of(item):
        if isinstance(item, tuple):
            return tuple(value_of(element) for element in item)
        if isinstance(item, ast.Node) and id(item) in dirty:
            return rebuild(item)
        return item

    def rebuild(node: ast.Node) -> ast.Node:
        replaced = leaf(node)
        if replaced is not None:
            return replaced
        changes = {}
        for name in ast.init_fields(type(node)):
            old = getattr(node, name)
            new = value_of(old)
            if new is not old:
                changes[name] = new
        if isinstance(node, ast.ProjectionItem):
            source = column_text((node.line, node.column))
            if source is not None:
                changes["source_text"] = source
        elif isinstance(node, ast.Call):
            inner = inner_query(node)
            if inner is not node.inner_query:
                changes["inner_query"] = inner
        return dataclasses.replace(node, **changes) if changes else node

    return rebuild(root) if id(root) in dirty else root


def _bind(template: _Template, text: str, values: list, spans: list[tuple[int, int]], inner: dict) -> ast.Query:
    """The template with the new text's literal values (in text order, the inner queries' after
    them) and column texts (``spans``: every shape element's (start, end) offsets; ``inner``: those
    of the inner queries, :func:`_with_inner_queries`)."""

    def leaf(node: ast.Node) -> ast.Node | None:
        if isinstance(node, ast.Literal):
            slot = template.slots.get((node.line, node.column))
            if slot is None:
                return node
            k, negated = slot
            value = values[k]
            return ast.Literal(-value if negated else value, line=node.line, column=node.column)
        if isinstance(node, ast.ListLiteral):
            k = template.lists.get((node.line, node.column))
            if k is not None:  # its Literal items made only if a stage reads them (ast.ListLiteral.of_values)
                return ast.ListLiteral.of_values(values[k], line=node.line, column=node.column)
        return None

    def column_text(position: tuple[int, int]) -> str | None:
        found = template.columns.get(position)
        if found is None:
            return None
        first, last = found
        return text[spans[first][0] : spans[last][1]]

    def inner_query(node: ast.Call) -> ast.Query | None:
        found = template.calls.get((node.line, node.column))
        if found is None:
            return node.inner_query
        inner_template, k, start, count = found
        inner_spans = inner[k][2]
        return _bind(inner_template, values[k], values[start : start + count], inner_spans, {})

    return _rebuild(template.query, template.dirty, leaf, column_text, inner_query)  # type: ignore[return-value]


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
