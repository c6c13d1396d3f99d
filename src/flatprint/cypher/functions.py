"""The scalar functions a query may call (Cypher's and APOC's), on values already evaluated.

:mod:`flatprint.cypher.registry` lists them with their arities and the analyzer checks calls
against it before a query runs; this module implements every scalar entry but ``coalesce``, which
the evaluator runs itself because it evaluates its arguments lazily. Aggregations are computed by
the executor (:mod:`flatprint.cypher.projection`).
"""

from __future__ import annotations

import json
import math
import random

from flatprint.cypher.errors import unsupported
from flatprint.cypher.semantics import format_value, labels_of, meta_type, properties_of
from flatprint.cypher.values import NodeRef, Path, RelRef, hashable, to_output
from flatprint.errors import QueryError


def call_function(e, name: str, args: list):  # noqa: C901 - a table of small functions
    x = args[0] if args else None
    if name == "size":
        return None if x is None else len(x)
    if name == "rand":
        return random.random()
    if name == "keys":
        if x is None:
            return None
        if isinstance(x, (NodeRef, RelRef)):
            return list(x.all_properties())
        if isinstance(x, dict):
            return list(x)
        raise QueryError(f"keys() expects a node, relationship or map (line {e.line}, column {e.column})")
    if name == "properties":
        return None if x is None else properties_of(x)
    if name == "id":
        if isinstance(x, NodeRef):
            return x.id if isinstance(x.id, int) else 0
        if isinstance(x, RelRef):
            return hash((x.kind, x.start, x.end)) & ((1 << 53) - 1)
        return None
    if name == "nodes":
        return None if x is None else list(x.nodes)
    if name in ("relationships", "rels"):
        return None if x is None else list(x.rels)
    if name == "length":
        if x is None:
            return None
        return len(x.rels) if isinstance(x, Path) else len(x)
    if name == "startnode":
        return None if x is None else NodeRef("segment", x.start, view=getattr(x, "view", None))
    if name == "endnode":
        return None if x is None else NodeRef("segment", x.end, view=getattr(x, "view", None))
    if name == "type":
        if x is not None and not isinstance(x, RelRef):
            raise invalid_argument(e, x)
        return None if x is None else x.kind
    if name == "labels":
        if x is None:
            return None
        return labels_of(x)
    if name == "tostring":
        if isinstance(x, (list, dict, NodeRef, RelRef, Path)):
            raise invalid_argument(e, x)
        return None if x is None else format_value(x)
    if name == "tointeger":
        if x is None:
            return None
        if not isinstance(x, (str, int, float)):
            raise invalid_argument(e, x)
        try:
            return int(float(x)) if isinstance(x, str) else int(x)
        except (TypeError, ValueError):
            return None
    if name == "tofloat":
        if x is not None and (isinstance(x, bool) or not isinstance(x, (str, int, float))):
            raise invalid_argument(e, x)
        try:
            return None if x is None else float(x)
        except (TypeError, ValueError):
            return None
    if name == "toboolean":
        if isinstance(x, str):
            return {"true": True, "false": False}.get(x.lower())
        if x is not None and not isinstance(x, int):  # booleans and integers convert
            raise invalid_argument(e, x)
        return None if x is None else bool(x)
    if name in ("tolower", "lower"):
        return None if x is None else str(x).lower()
    if name in ("toupper", "upper"):
        return None if x is None else str(x).upper()
    if name in ("trim", "ltrim", "rtrim"):
        return None if x is None else getattr(str(x), {"trim": "strip", "ltrim": "lstrip", "rtrim": "rstrip"}[name])()
    if name == "last":
        return x[-1] if x else None
    if name == "head":
        return x[0] if x else None
    if name == "tail":
        return None if x is None else list(x[1:])
    if name == "reverse":
        return None if x is None else (x[::-1] if isinstance(x, str) else list(reversed(x)))
    if name in ("abs", "floor", "ceil", "sqrt", "log", "exp", "sign", "round"):
        if x is None:
            return None
        fn = {
            "abs": abs,
            "floor": lambda v: float(math.floor(v)),
            "ceil": lambda v: float(math.ceil(v)),
            "sqrt": math.sqrt,
            "log": math.log,
            "exp": math.exp,
            "sign": lambda v: (v > 0) - (v < 0),
            "round": lambda v: float(math.floor(v + 0.5)),
        }[name]
        return fn(x)
    if name == "range":
        if any(a is None for a in args):
            return None
        wrong = next((a for a in args if not isinstance(a, int) or isinstance(a, bool)), None)
        if wrong is not None:
            raise invalid_argument(e, wrong, "integers")
        step = args[2] if len(args) > 2 else 1
        if step == 0:
            raise QueryError("range() step must not be zero")
        values = range(args[0], args[1] + (1 if step > 0 else -1), step)
        if len(values) > 10_000_000:
            raise QueryError(f"range() of {len(values)} values is too large (at most 10,000,000)")
        return list(values)
    if name == "split":
        return None if x is None or args[1] is None else x.split(args[1])
    if name == "replace":
        return None if None in args else args[0].replace(args[1], args[2])
    if name == "substring":
        if x is None:
            return None
        return x[args[1] :] if len(args) == 2 else x[args[1] : args[1] + args[2]]
    if name == "left":
        return None if x is None else x[: args[1]]
    if name == "right":
        return None if x is None else (x[-args[1] :] if args[1] else "")
    if name == "apoc.convert.fromjsonmap":
        if x is None:
            return None
        value = json.loads(x) if isinstance(x, str) else x
        if not isinstance(value, dict):
            raise QueryError("apoc.convert.fromJsonMap: not a JSON object")
        return value
    if name == "apoc.convert.fromjsonlist":
        if x is None:
            return None
        value = json.loads(x) if isinstance(x, str) else x
        if not isinstance(value, list):
            raise QueryError("apoc.convert.fromJsonList: not a JSON array")
        return value
    if name == "apoc.convert.tojson":
        return json.dumps(to_output(x))
    if name in ("apoc.map.removekeys", "apoc.map.removekey"):
        if x is None:
            return None
        drop = set(args[1] if isinstance(args[1], list) else [args[1]])
        return {k: v for k, v in properties_of(x).items() if k not in drop}
    if name == "apoc.coll.containsduplicates":
        if x is None:
            return None
        seen = set()
        for item in x:
            key = hashable(item)
            if key in seen:
                return True
            seen.add(key)
        return False
    if name == "apoc.coll.toset":
        if x is None:
            return None
        out, seen = [], set()
        for item in x:
            if hashable(item) not in seen:
                seen.add(hashable(item))
                out.append(item)
        return out
    if name == "apoc.coll.flatten":
        return None if x is None else [v for item in x for v in (item if isinstance(item, list) else [item])]
    if name in ("apoc.coll.sum", "apoc.coll.max", "apoc.coll.min"):
        values = [v for v in (x or []) if v is not None]
        if not values:
            return None if name != "apoc.coll.sum" else 0
        return {"apoc.coll.sum": sum, "apoc.coll.max": max, "apoc.coll.min": min}[name](values)
    if name == "apoc.meta.type":
        return meta_type(x)
    raise unsupported(e, f"function {e.name}()")


def invalid_argument(e, value, expected: str = "") -> QueryError:
    """A function called with a value of a type it does not take (Neo4j raises a TypeError)."""
    wants = f" (it takes {expected})" if expected else ""
    kind = meta_type(value).lower()
    article = "an" if kind[0] in "aeiou" else "a"
    return QueryError(f"{e.name}() of {article} {kind}{wants} (line {e.line}, column {e.column})")
