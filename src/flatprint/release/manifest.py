"""What a published release contains, as plain data: names, bucket URLs, published sizes, local layout.

The Male CNS v0.9 entries below were checked against the release's download page (the
``janelia-flyem/male-cns`` repository, ``docs/download.md``, which renders as
male-cns.janelia.org/download). ``verified`` says whether the exact location appears there.
Published sizes are the rounded figures printed on that page (decimal units); the exact byte
count of each file comes from the server (HEAD or bucket listing) when downloading.

Local layout under the download directory ``DEST``:

- the seven flat-connectome feathers directly in ``DEST`` (``DEST`` is the release directory
  that ``flatprint ingest`` reads);
- skeleton directories under ``DEST/skeletons/<variant>/`` (e.g. ``skeletons/swc/12781.swc``);
- ROI volumes under ``DEST/rois/<volume name>/`` (neuroglancer precomputed, as in the bucket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flatprint.errors import ReleaseError

#: Public HTTPS endpoint of Google Cloud Storage; ``--mirror`` replaces exactly this prefix.
GCS_HTTPS_BASE = "https://storage.googleapis.com"

#: Where the facts in this module were read.
DOWNLOAD_PAGE = "male-cns.janelia.org/download (janelia-flyem/male-cns docs/download.md)"

ItemKind = Literal["file", "directory"]
ItemGroup = Literal["tables", "skeletons", "rois"]

MB = 1_000_000
GB = 1_000_000_000


def gs_to_https(gs_url: str, base: str = GCS_HTTPS_BASE) -> str:
    """Map ``gs://bucket/path`` to ``<base>/bucket/path`` (the bucket's public HTTPS form)."""
    if not gs_url.startswith("gs://"):
        raise ReleaseError(f"not a gs:// URL: {gs_url!r}")
    return f"{base.rstrip('/')}/{gs_url[len('gs://'):]}"


@dataclass(frozen=True)
class ReleaseItem:
    """One downloadable thing: a single object (``file``) or every object under a prefix (``directory``).

    ``name`` is the short key used on the command line (``--tables weights``), ``local_path`` is
    relative to the download directory, ``published_size`` is in bytes (approximate, ``None`` where
    the download page gives none).
    """

    name: str
    group: ItemGroup
    kind: ItemKind
    gs_url: str
    local_path: str
    published_size: int | None
    description: str
    verified: bool = True
    note: str = ""

    @property
    def bucket(self) -> str:
        return self.gs_url[len("gs://"):].split("/", 1)[0]

    @property
    def object_path(self) -> str:
        """The object name (file) or listing prefix (directory, ending in ``/``) inside the bucket."""
        return self.gs_url[len("gs://"):].split("/", 1)[1]

    @property
    def url(self) -> str:
        """The production HTTPS URL."""
        return gs_to_https(self.gs_url)

    def url_for(self, mirror: str | None = None) -> str:
        """The HTTPS URL, with ``https://storage.googleapis.com`` replaced by ``mirror`` when given."""
        return gs_to_https(self.gs_url, mirror or GCS_HTTPS_BASE)


@dataclass(frozen=True)
class Release:
    """A named release (``dataset:tag``) and everything it offers for download."""

    key: str
    items: tuple[ReleaseItem, ...]

    def item(self, name: str) -> ReleaseItem:
        for candidate in self.items:
            if candidate.name == name:
                return candidate
        raise ReleaseError(f"release {self.key} has no item named {name!r}")

    def group(self, group: ItemGroup) -> tuple[ReleaseItem, ...]:
        return tuple(item for item in self.items if item.group == group)

    def names(self, group: ItemGroup) -> tuple[str, ...]:
        return tuple(item.name for item in self.group(group))


_V09 = "gs://flyem-male-cns/v0.9"
_FLAT = f"{_V09}/connectome-data/flat-connectome"
_SKELETONS = f"{_V09}/segmentation"

MALE_CNS_V09 = Release(
    key="male-cns:v0.9",
    items=(
        # --- flat-connectome tables (file names, URLs and sizes as on the download page) ---
        ReleaseItem(
            "annotations", "tables", "file",
            f"{_FLAT}/body-annotations-male-cns-v0.9-minconf-0.5.feather",
            "body-annotations-male-cns-v0.9-minconf-0.5.feather", 13 * MB,
            "curated neuron annotations (class, type, side, ...)",
        ),
        ReleaseItem(
            "neurotransmitters", "tables", "file",
            f"{_FLAT}/body-neurotransmitters-male-cns-v0.9.feather",
            "body-neurotransmitters-male-cns-v0.9.feather", 42 * MB,
            "aggregate neurotransmitter predictions per neuron",
        ),
        ReleaseItem(
            "stats", "tables", "file",
            f"{_FLAT}/body-stats-male-cns-v0.9-minconf-0.5.feather",
            "body-stats-male-cns-v0.9-minconf-0.5.feather", 780 * MB,
            "synapse counts of every segment with synapses",
        ),
        ReleaseItem(
            "weights", "tables", "file",
            f"{_FLAT}/connectome-weights-male-cns-v0.9-minconf-0.5.feather",
            "connectome-weights-male-cns-v0.9-minconf-0.5.feather", 1_100 * MB,
            "segment-to-segment connection weights (the full graph)",
        ),
        ReleaseItem(
            "syn-points", "tables", "file",
            f"{_FLAT}/syn-points-male-cns-v0.9-minconf-0.5.feather",
            "syn-points-male-cns-v0.9-minconf-0.5.feather", 12_700 * MB,
            "pre- and post-synapse points with body and ROIs",
        ),
        ReleaseItem(
            "syn-partners", "tables", "file",
            f"{_FLAT}/syn-partners-male-cns-v0.9-minconf-0.5.feather",
            "syn-partners-male-cns-v0.9-minconf-0.5.feather", 6_800 * MB,
            "synaptic partner pairs with bodies and primary ROI",
        ),
        ReleaseItem(
            "tbar-nt", "tables", "file",
            f"{_FLAT}/tbar-neurotransmitters-male-cns-v0.9.feather",
            "tbar-neurotransmitters-male-cns-v0.9.feather", 2_700 * MB,
            "neurotransmitter probabilities per pre-synapse",
        ),
        # --- skeleton directories (paths as on the download page; sizes not published) ---
        ReleaseItem(
            "swc", "skeletons", "directory",
            f"{_SKELETONS}/skeletons-malecns/skeletons-swc/",
            "skeletons/swc", None,
            "SWC skeletons (<body>.swc), Male CNS space, 8 nm units",
        ),
        ReleaseItem(
            "precomputed", "skeletons", "directory",
            f"{_SKELETONS}/skeletons-malecns/skeletons-precomputed/",
            "skeletons/precomputed", None,
            "neuroglancer precomputed skeletons (unsharded), Male CNS space, 1 nm units",
        ),
        ReleaseItem(
            "mirrored-swc", "skeletons", "directory",
            f"{_SKELETONS}/skeletons-malecns-mirrored/skeletons-swc/",
            "skeletons/mirrored-swc", None,
            "mirrored SWC skeletons (navis-flybrains transform), 8 nm units",
        ),
        ReleaseItem(
            "mirrored-precomputed", "skeletons", "directory",
            f"{_SKELETONS}/skeletons-malecns-mirrored/skeletons-precomputed/",
            "skeletons/mirrored-precomputed", None,
            "mirrored precomputed skeletons, 1 nm units",
        ),
        ReleaseItem(
            "unisex-template", "skeletons", "directory",
            f"{_SKELETONS}/skeletons-unisex-template/",
            "skeletons/unisex-template", None,
            "skeletons in JRC2018 unisex template space, micron units",
            note="the page names the directory only; its inner layout (e.g. skeletons-swc/) is unverified",
        ),
        # --- ROI volumes (neuroglancer precomputed, 256 nm; sizes not published) ---
        ReleaseItem(
            "fullbrain-roi-v4", "rois", "directory",
            "gs://flyem-male-cns/rois/fullbrain-roi-v4/",
            "rois/fullbrain-roi-v4", None,
            "brain neuropil ROI volume, uint64 labels <= 96",
        ),
        ReleaseItem(
            "malecns-vnc-neuropil-roi-v0", "rois", "directory",
            "gs://flyem-male-cns/rois/malecns-vnc-neuropil-roi-v0/",
            "rois/malecns-vnc-neuropil-roi-v0", None,
            "VNC neuropil ROI volume, uint64 labels <= 27",
        ),
    ),
)

#: Releases known to ``flatprint download --release``.
RELEASES: dict[str, Release] = {MALE_CNS_V09.key: MALE_CNS_V09}

DEFAULT_RELEASE = MALE_CNS_V09.key
TABLE_NAMES = MALE_CNS_V09.names("tables")
SKELETON_NAMES = MALE_CNS_V09.names("skeletons")
ROI_NAMES = MALE_CNS_V09.names("rois")


def get_release(key: str) -> Release:
    """The release called ``key`` (e.g. ``male-cns:v0.9``), or a ReleaseError listing the known ones."""
    try:
        return RELEASES[key]
    except KeyError:
        raise ReleaseError(f"unknown release {key!r}; known: {', '.join(sorted(RELEASES))}") from None
