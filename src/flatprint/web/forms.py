"""Turning the explorer's form fields into the library's arguments (NeuronCriteria keyword arguments).

The web layer does no querying of its own: a form becomes a dict of NeuronCriteria arguments, which
is both what runs (``NC(**kwargs)``) and what the "Python" button prints.
"""

from __future__ import annotations

import re

from flatprint.errors import QueryError
from flatprint.query.criteria import EXACT_FIELDS, SECONDARY_TYPE_FIELDS
from flatprint.web.values import property_types, regex_values

MODES = ("exact", "regex", "list")
REGEX_NATIVE = ("type", "instance")  # NeuronCriteria matches these by regex itself


def searchable_properties(client) -> list[str]:
    """Neuron properties NeuronCriteria can match, present in this dataset (property names, not args)."""
    keys = set(client.neuron_keys)
    names = ["type", "instance", *[("class" if f == "class_" else f) for f in EXACT_FIELDS], *SECONDARY_TYPE_FIELDS]
    seen, out = set(), []
    for name in names:
        if name in keys and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def argument_name(prop: str) -> str:
    return "class_" if prop == "class" else prop


def split_list(text: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\n;]", text or "") if v.strip()]


def parse_ints(text: str, what: str) -> list[int]:
    out = []
    for v in split_list(text.replace(" ", ",")):
        try:
            out.append(int(v))
        except ValueError:
            raise QueryError(f"{what}: {v!r} is not a body id (an integer)") from None
    return out


def _coerce(client, prop: str, value: str):
    kind = property_types(client).get(prop, "string")
    try:
        if kind in ("long", "int", "integer"):
            return int(value)
        if kind in ("float", "double"):
            return float(value)
    except ValueError:
        raise QueryError(f"{prop}: {value!r} is not a number") from None
    return value


def _number(params, name: str) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: {raw!r} is not an integer") from None
    if value < 0:
        raise QueryError(f"{name} must be >= 0")
    return value


def search_criteria(client, params) -> dict:
    """NeuronCriteria kwargs from the search form (repeated p/v/m rows, bodyId, ROIs, thresholds)."""
    allowed = set(searchable_properties(client))
    rows: dict[str, list[tuple[str, str]]] = {}
    props, vals, modes = params.getlist("p"), params.getlist("v"), params.getlist("m")
    quick = None
    for i, prop in enumerate(props):
        value = vals[i] if i < len(vals) else ""
        mode = modes[i] if i < len(modes) else "exact"
        if not value.strip():
            continue
        if not prop:  # the header's quick search: a type or instance, as neuprint-python coerces a string
            quick = value.strip()
            continue
        if prop not in allowed:
            raise QueryError(f"{prop!r} is not a searchable neuron property here (one of {', '.join(sorted(allowed))})")
        if mode not in MODES:
            raise QueryError(f"mode must be one of {MODES}, got {mode!r}")
        rows.setdefault(prop, []).append((mode, value.strip()))
    kwargs: dict = {}
    regex_native = [
        p for p in REGEX_NATIVE if p in rows and all(m == "regex" for m, _ in rows[p]) and len(rows[p]) == 1
    ]
    # NeuronCriteria's regex flag covers type and instance together: use it only when every
    # type/instance row is a single regex; otherwise regexes become the list of values they match.
    use_native = bool(regex_native) and all(p in regex_native for p in REGEX_NATIVE if p in rows)
    for prop, entries in rows.items():
        sets = []
        for mode, value in entries:
            if mode == "regex":
                if use_native and prop in REGEX_NATIVE:
                    kwargs[prop] = value
                    continue
                matched = regex_values(client, prop, value)
                if not matched:
                    raise QueryError(f"{prop}: no value matches the regular expression {value!r}")
                sets.append(matched)
            elif mode == "list":
                sets.append([_coerce(client, prop, v) for v in split_list(value)])
            else:
                sets.append([_coerce(client, prop, value)])
        if not sets:
            continue
        values = sets[0]
        for other in sets[1:]:
            values = [v for v in values if v in other]
        if not values:
            raise QueryError(f"{prop}: the rows for this property exclude each other")
        kwargs[argument_name(prop)] = values if len(values) > 1 else values[0]
    if any(p in REGEX_NATIVE for p in kwargs):
        kwargs["regex"] = bool(use_native)
    elif quick is not None:
        kwargs = {"type": quick, "instance": quick, **kwargs}
    bodies = parse_ints(params.get("bodyId", ""), "bodyId")
    if bodies:
        kwargs = {"bodyId": bodies if len(bodies) > 1 else bodies[0], **kwargs}
    inputs, outputs = params.getlist("inputRois"), params.getlist("outputRois")
    rois = params.getlist("rois")
    if rois:
        kwargs["rois"] = sorted(set(rois) | set(inputs) | set(outputs))
    if inputs:
        kwargs["inputRois"] = sorted(set(inputs))
    if outputs:
        kwargs["outputRois"] = sorted(set(outputs))
    if rois or inputs or outputs:
        req = params.get("roi_req", "all")
        if req not in ("any", "all"):
            raise QueryError("roi_req must be 'any' or 'all'")
        if req != "all":
            kwargs["roi_req"] = req
    for name in ("min_pre", "min_post"):
        value = _number(params, name)
        if value:
            kwargs[name] = value
    label = params.get("label", "")
    if label in ("Neuron", "Segment"):
        kwargs["label"] = label
    elif label:
        raise QueryError(f"label must be Neuron or Segment, got {label!r}")
    return kwargs


def group_criteria(client, text: str, what: str) -> dict | None:
    """A group typed into one box, coerced the way neuprint-python coerces a criteria argument:
    body ids (``12781, 556329``) -> bodyId; names -> type or instance (a regex when it looks like one);
    ``prop=value`` -> that property. Empty -> None (no restriction)."""
    text = (text or "").strip()
    if not text:
        return None
    if re.fullmatch(r"[\d\s,;]+", text):
        bodies = parse_ints(text, what)
        return {"bodyId": bodies if len(bodies) > 1 else bodies[0]}
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)", text)
    if m and m.group(1) in set(searchable_properties(client)):
        prop, raw = m.group(1), m.group(2)
        values = [_coerce(client, prop, v) for v in split_list(raw)]
        return {argument_name(prop): values if len(values) > 1 else values[0]}
    names = split_list(text)
    value = names if len(names) > 1 else names[0]
    return {"type": value, "instance": value}
