"""The "Python" button: the flatprint / neuprint-python call that gives a table.

A snippet is runnable as shown: the flatprint part opens the very store the page was built from and
ends with ``df = ...`` holding the table (what the CSV download contains); the neuprint-python part
is the same call against ``flatprint serve`` (functions flatprint adds beyond neuprint-python say so).
"""

from __future__ import annotations

NEUPRINT_FUNCTIONS = {
    "fetch_neurons",
    "fetch_simple_connections",
    "fetch_adjacencies",
    "fetch_shortest_paths",
    "fetch_paths",
    "fetch_custom",
    "fetch_synapses",
    "fetch_common_connectivity",
}


def literal(value) -> str:
    """Python source for a plain value (str, int, float, bool, None, list, set, dict)."""
    if isinstance(value, set):
        value = sorted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return repr(value)


def criteria_code(kwargs: dict | None) -> str:
    """``NC(...)`` for the keyword arguments a page gave NeuronCriteria (None -> ``None``)."""
    if kwargs is None:
        return "None"
    parts = []
    for k, v in kwargs.items():
        if isinstance(v, list) and len(v) == 1 and k not in ("rois", "inputRois", "outputRois"):
            v = v[0]
        parts.append(f"{k}={literal(v)}")
    return f"NC({', '.join(parts)})"


def call_code(function: str, args: list[str], kwargs: dict | None = None) -> str:
    parts = list(args) + [f"{k}={literal(v)}" for k, v in (kwargs or {}).items()]
    return f"{function}({', '.join(parts)})"


def snippet(
    dataset: str, store_path: str, function: str, call: str, assign: str = "df", after: str = "", uses_nc: bool = True
) -> str:
    """Both variants of one call: flatprint over the local store, neuprint-python over the server."""
    nc = "NeuronCriteria as NC, " if uses_nc else ""
    lines = [
        "# flatprint, on this machine's store",
        f"from flatprint import Client, {nc}{function}",
        f"c = Client({store_path!r})",
        f"{assign} = {call}",
    ]
    if after:
        lines.append(after)
    lines.append("")
    if function in NEUPRINT_FUNCTIONS:
        lines += [
            "# neuprint-python, against `flatprint serve` (same call)",
            f"from neuprint import Client, {nc}{function}",
            f"c = Client('https://localhost:8443', dataset={dataset!r}, token='local')",
            f"{assign} = {call}",
        ]
        if after:
            lines.append(after)
    else:
        lines.append(f"# {function} is a flatprint addition; neuprint-python has no equivalent call")
    return "\n".join(lines)
