"""ROI listings and the ROI hierarchy."""

from __future__ import annotations

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.general import fetch_meta


@inject_client
def fetch_all_rois(*, client=None) -> list[str]:
    """Every ROI of the dataset (all levels), sorted."""
    return sorted(fetch_meta(client=client)["roiInfo"])


@inject_client
def fetch_primary_rois(*, client=None) -> list[str]:
    """The primary ROIs (non-overlapping neuropils), sorted."""
    return sorted(client.store.meta["primaryRois"])


def _text_tree(d: dict) -> str:
    lines = []

    def walk(node: dict, prefix: str):
        items = list(node.items())
        for i, (name, children) in enumerate(items):
            last = i == len(items) - 1
            lines.append(f"{prefix} +-- {name}")
            walk(children, prefix + ("    " if last else " |  "))

    ((root, children),) = d.items()
    lines.append(root)
    walk(children, "")
    return "\n".join(lines)


@inject_client
def fetch_roi_hierarchy(include_subprimary=True, mark_primary=True, format="dict", *, client=None):
    """The ROI tree as a nested dict, a text tree, or a networkx DiGraph; primary ROIs marked with '*'."""
    if format not in ("dict", "text", "nx"):
        raise QueryError(f"format must be 'dict', 'text' or 'nx', got {format!r}")
    meta = fetch_meta(client=client)
    primary = set(meta["primaryRois"])

    def insert(node, out):
        name = node["name"]
        is_primary = name in primary
        key = name + "*" if (mark_primary and is_primary) else name
        out[key] = {}
        if is_primary and not include_subprimary:
            return
        for child in sorted(node.get("children", []), key=lambda c: c["name"]):
            insert(child, out[key])

    tree: dict = {}
    insert(meta["roiHierarchy"], tree)
    if format == "dict":
        return tree
    if format == "text":
        return _text_tree(tree)
    import networkx as nx  # noqa: PLC0415 - networkx only for the hierarchy graph (start-up time)

    graph = nx.DiGraph()

    def add(parent, children):
        for name, grandchildren in children.items():
            graph.add_edge(parent, name)
            add(name, grandchildren)

    ((root, children),) = tree.items()
    add(root, children)
    return graph
