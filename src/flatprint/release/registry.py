"""The release registry: one description per published release, kept as data in ``releases/*.toml``.

A description says what a release is: its key (``male-cns:v1.0``), file names and their filtered
variants, the ROI sets of its synapse tables (where the schemas differ between versions), expected row
counts and byte sizes, and the bucket layout it is downloaded from. synth, download, ingest, info and
serve read releases only through here, so adding a release means adding a TOML file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow as pa

from flatprint.errors import ReleaseError
from flatprint.release import tables as T
from flatprint.release.manifest import MB, Release, ReleaseItem

DESCRIPTIONS = Path(__file__).with_name("releases")
DEFAULT_KEY = "male-cns:v0.9"
TABLE_KEYS = ("annotations", "neurotransmitters", "stats", "weights", "syn-points", "syn-partners", "tbar-nt")
_ARROW_INTS = {
    name: getattr(pa, name)() for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
_TABLE_DESCRIPTIONS = {
    "annotations": "curated neuron annotations (class, type, side, ...)",
    "neurotransmitters": "aggregate neurotransmitter predictions per neuron",
    "stats": "synapse counts of every segment with synapses",
    "weights": "segment-to-segment connection weights (the full graph)",
    "syn-points": "pre- and post-synapse points with body and ROIs",
    "syn-partners": "synaptic partner pairs with bodies and primary ROI",
    "tbar-nt": "neurotransmitter probabilities per pre-synapse",
}


@dataclass(frozen=True)
class RoiSet:
    """One ROI set of syn-points: a dictionary column ``name`` and its integer ``<name>_label``."""

    name: str
    index_type: pa.DataType
    label_type: pa.DataType
    level: str
    evidence: str

    @property
    def confirmed(self) -> bool:
        return not self.evidence.startswith("GUESS")


@dataclass(frozen=True)
class ReleaseDescription:
    key: str
    dataset: str
    version: str
    released: str
    snapshot_tag: str
    min_conf: float
    title: str
    source: str
    files: dict[str, str]
    variants: dict[str, tuple[str, ...]]
    published_bytes: dict[str, int]
    exact_bytes: dict[str, int]
    roi_sets: tuple[RoiSet, ...]
    tbar_roi_sets: tuple[str, ...]
    rows: dict[str, int]
    remote: dict = field(repr=False)

    @property
    def conf_tag(self) -> str:
        return f"{self.snapshot_tag}-minconf-{self.min_conf}"

    def filename(self, table: str, variant: str | None = None) -> str:
        name = self.files[table]
        if variant is None:
            return name
        if variant not in self.variants.get(table, ()):
            raise ReleaseError(f"release {self.key}: table {table!r} has no variant {variant!r}")
        return name.removesuffix(".feather") + f"-{variant}.feather"

    # ---- schemas
    def syn_points_schema(self) -> pa.Schema:
        return T.syn_points_schema(
            {s.name: s.label_type for s in self.roi_sets}, {s.name: s.index_type for s in self.roi_sets}
        )

    def tbar_nt_schema(self) -> pa.Schema:
        index = {s.name: s.index_type for s in self.roi_sets}
        return T.tbar_neurotransmitters_schema(list(self.tbar_roi_sets), index)

    def schemas(self) -> dict[str, pa.Schema]:
        """The Arrow schema of each table as this release writes it (what ``flatprint synth`` writes)."""
        return {
            "annotations": T.ANNOTATIONS,
            "neurotransmitters": T.BODY_NEUROTRANSMITTERS,
            "stats": T.BODY_STATS,
            "weights": T.CONNECTOME_WEIGHTS,
            "syn-points": self.syn_points_schema(),
            "syn-partners": T.SYN_PARTNERS,
            "tbar-nt": self.tbar_nt_schema(),
        }

    def table_specs(self) -> dict[str, T.TableSpec]:
        """What ingest requires of each file: its name and the accepted types of its required columns.

        Only ``primary`` among the ROI sets is required: ingest finds the others by name (any
        ``X`` / ``X_label`` pair), so a release with more, fewer or differently named levels still loads.
        """
        required = self.schemas()
        required["syn-points"] = T.syn_points_schema({"primary": pa.uint16()})
        required["tbar-nt"] = T.tbar_neurotransmitters_schema([])
        return {key: T.TableSpec(key, self.files[key], T.accepted_types(required[key])) for key in TABLE_KEYS}

    # ---- download
    def download_manifest(self) -> Release:
        """The downloadable items (tables, skeleton and ROI directories) as flatprint.download uses them."""
        remote = self.remote
        base = f"gs://{remote['bucket']}"
        flat = f"{base}/{remote['prefix']}/{remote['flat']}"
        items = [
            ReleaseItem(
                key,
                "tables",
                "file",
                f"{flat}/{self.files[key]}",
                self.files[key],
                self.published_bytes.get(key),
                _TABLE_DESCRIPTIONS[key],
            )
            for key in TABLE_KEYS
        ]
        for d in remote.get("directories", []):
            path = d["path"].format(prefix=remote["prefix"])
            items.append(
                ReleaseItem(
                    d["name"],
                    d["group"],
                    "directory",
                    f"{base}/{path}",
                    d["local"],
                    None,
                    d["description"],
                    note=d.get("note", ""),
                )
            )
        return Release(self.key, tuple(items))


def _load(path: Path) -> ReleaseDescription:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReleaseError(f"{path}: not a readable release description ({exc})") from None
    try:
        tags = {"tag": raw["snapshot_tag"], "conf_tag": f"{raw['snapshot_tag']}-minconf-{raw['min_conf']}"}
        files = {key: raw["files"][key].format(**tags) for key in TABLE_KEYS}
        roi_sets = tuple(
            RoiSet(name, _ARROW_INTS[s["index"]], _ARROW_INTS[s["label"]], s["level"], s["evidence"])
            for name, s in raw["roi_sets"].items()
        )
        desc = ReleaseDescription(
            key=raw["key"],
            dataset=raw["dataset"],
            version=raw["version"],
            released=raw["released"],
            snapshot_tag=raw["snapshot_tag"],
            min_conf=raw["min_conf"],
            title=raw["title"],
            source=raw["source"],
            files=files,
            variants={k: tuple(v) for k, v in raw.get("variants", {}).items()},
            published_bytes={k: int(v * MB) for k, v in raw.get("published_mb", {}).items()},
            exact_bytes=dict(raw.get("bytes", {})),
            roi_sets=roi_sets,
            tbar_roi_sets=tuple(raw["schema"]["tbar_roi_sets"]),
            rows=dict(raw.get("rows", {})),
            remote=raw["remote"],
        )
    except KeyError as exc:
        raise ReleaseError(f"{path}: release description lacks {exc}") from None
    if desc.key != f"{desc.dataset}:{desc.version}":
        raise ReleaseError(f"{path}: key {desc.key!r} is not dataset:version")
    if "primary" not in {s.name for s in roi_sets}:
        raise ReleaseError(f"{path}: roi_sets must include 'primary'")
    return desc


@cache
def releases() -> dict[str, ReleaseDescription]:
    """Every described release by key, oldest first."""
    found = [_load(p) for p in sorted(DESCRIPTIONS.glob("*.toml"))]
    return {d.key: d for d in sorted(found, key=lambda d: d.released)}


def describe(key: str) -> ReleaseDescription:
    """The release called ``key`` (``male-cns:v1.0``; a bare ``v1.0`` means ``male-cns:v1.0``)."""
    known = releases()
    if ":" not in key:
        key = f"male-cns:{key}"
    try:
        return known[key]
    except KeyError:
        raise ReleaseError(f"unknown release {key!r}; known: {', '.join(known)}") from None


def detect(root: Path) -> ReleaseDescription:
    """Which release a directory holds: the one whose file names are (most completely) present.

    A release's ``manifest.json`` (written by synth and download) is not needed: file names differ
    between releases by their snapshot tag. Ties go to the newest release.
    """
    names = {p.name for p in root.iterdir()} if root.is_dir() else set()
    best = max(releases().values(), key=lambda d: (sum(f in names for f in d.files.values()), d.released))
    return best
