"""The layering of src/flatprint (docs/architecture.md): no new upward or sideways import, no new circle.

The analysis is scripts/architecture.py's (every import, inside functions too); the arrows that break
the layering today are allowed below, each with the issue that removes it. An allowed arrow that no
longer exists fails too, so the list only shrinks.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("architecture", REPO / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is made
    spec.loader.exec_module(module)
    return module


architecture = _load_script()

#: (importing package, imported package) -> why it is still there and what removes it.
ALLOWED_ARROWS: dict[tuple[str, str], str] = {}
#: Circles between packages, each with the issue that breaks it.
ALLOWED_CIRCLES: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def counts():
    return architecture.unit_arrows(architecture.import_arrows())


def test_every_module_is_on_a_floor():
    for module in architecture.module_names(architecture.SRC):
        assert architecture.unit_of(module) in architecture.FLOOR_OF, module


def test_no_new_upward_or_sideways_arrow(counts):
    broken = architecture.broken_arrows(counts)
    new = {arrow: kind for arrow, kind in broken.items() if arrow not in ALLOWED_ARROWS}
    assert not new, f"imports that break the layering of docs/architecture.md: {new}"
    gone = set(ALLOWED_ARROWS) - set(broken)
    assert not gone, f"these allowed arrows are gone: remove them from ALLOWED_ARROWS: {sorted(gone)}"


def test_no_new_import_circle(counts):
    loops = set(architecture.circles(counts))
    assert loops <= set(ALLOWED_CIRCLES), f"new import circles: {sorted(loops - set(ALLOWED_CIRCLES))}"
    gone = set(ALLOWED_CIRCLES) - loops
    assert not gone, f"these circles are broken: remove them from ALLOWED_CIRCLES: {sorted(gone)}"


def test_the_document_shows_the_current_imports():
    assert architecture.document_section() == architecture.render(), (
        "docs/architecture.md is out of date: run python scripts/architecture.py"
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "flatprint" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_check_sees_arrows_hidden_in_functions_and_circles(tmp_path):
    """The analysis on a small made-up tree whose arrows are known on paper."""
    src = _tree(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "errors.py": "def late():\n    from flatprint.store import Store\n",  # upward, inside a function
            "store/__init__.py": "from flatprint.errors import FlatprintError\nclass Store: ...\n",
            "ingest/__init__.py": "from flatprint import __version__\n",
            "synth/__init__.py": "from .. import ingest\n",  # sideways, relative
            "query/__init__.py": "import flatprint.cypher.engine\n",
            "cypher/__init__.py": "",
            "cypher/engine.py": "from flatprint.query import client\n",  # upward: query <-> cypher
            "query/client.py": "",
        },
    )
    arrows = architecture.import_arrows(src)
    hidden = [a for a in arrows if a.source == "flatprint.errors"]
    assert [(a.target, a.deferred) for a in hidden] == [("flatprint.store", True)]
    counts = architecture.unit_arrows(arrows)
    assert architecture.broken_arrows(counts) == {
        ("errors", "store"): "upward",
        ("synth", "ingest"): "sideways",
        ("cypher", "query"): "upward",
    }
    assert architecture.circles(counts) == [("cypher", "query"), ("errors", "store")]
    assert ("ingest", "version") in counts and ("ingest", "flatprint") not in counts


def test_a_module_on_no_floor_is_named():
    with pytest.raises(KeyError, match="flatprint.newpackage"):
        architecture.unit_of("flatprint.newpackage.thing")
