"""What a published release contains, as plain data: names, bucket URLs, published sizes, local layout.

The entries themselves are data, one description per release (flatprint.release.registry); the
Male CNS v0.9 entries were checked against the release's download page (the
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
    return f"{base.rstrip('/')}/{gs_url[len('gs://') :]}"


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
        return self.gs_url[len("gs://") :].split("/", 1)[0]

    @property
    def object_path(self) -> str:
        """The object name (file) or listing prefix (directory, ending in ``/``) inside the bucket."""
        return self.gs_url[len("gs://") :].split("/", 1)[1]

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


def get_release(key: str) -> Release:
    """The release called ``key`` (e.g. ``male-cns:v1.0``), or a ReleaseError listing the known ones."""
    from flatprint.release.registry import describe  # noqa: PLC0415 - the registry builds on this module's types

    return describe(key).download_manifest()


DEFAULT_RELEASE = "male-cns:v0.9"


def __getattr__(name: str):
    # Module constants computed from the registry on first use (it imports this module's types).
    if name not in ("RELEASES", "MALE_CNS_V09", "TABLE_NAMES", "SKELETON_NAMES", "ROI_NAMES"):
        raise AttributeError(name)
    from flatprint.release.registry import releases  # noqa: PLC0415 - release.registry imports this module

    if name == "RELEASES":
        return {key: d.download_manifest() for key, d in releases().items()}
    if name == "MALE_CNS_V09":
        return get_release("male-cns:v0.9")
    default = get_release(DEFAULT_RELEASE)
    if name == "TABLE_NAMES":
        return default.names("tables")
    if name == "SKELETON_NAMES":
        return default.names("skeletons")
    if name == "ROI_NAMES":
        return default.names("rois")
    raise AttributeError(name)
