"""Where the tests find the shared reference data (the Cypher corpora captured from neuprint-python,
navis and neuprintr) on any clone: ``../shared/reference`` next to the repository, or the directory
named by $FLATPRINT_REFERENCE. Tests that need it skip with a reason saying so when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = "FLATPRINT_REFERENCE"
CORPORA = ("neuprint-queries", "neuprintr-queries")


def _checkout_roots() -> list[Path]:
    """The repository root and, for a git worktree, the root of the main checkout it belongs to
    (``.git`` is then a file ``gitdir: <main>/.git/worktrees/<name>``)."""
    roots = [REPO_ROOT]
    dot_git = REPO_ROOT / ".git"
    if dot_git.is_file():
        text = dot_git.read_text().strip()
        if text.startswith("gitdir:"):
            gitdir = (REPO_ROOT / text.split(":", 1)[1].strip()).resolve()
            common = gitdir / "commondir"
            main_git = (gitdir / common.read_text().strip()).resolve() if common.is_file() else gitdir.parents[1]
            roots.append(main_git.parent)
    return roots


def candidates() -> list[Path]:
    found = [Path(os.environ[ENV]).expanduser()] if os.environ.get(ENV) else []
    return found + [root.parent / "shared" / "reference" for root in _checkout_roots()]


def find_reference() -> Path | None:
    """The reference directory (one holding the captured corpora), or None."""
    return next((c for c in candidates() if all((c / name).is_dir() for name in CORPORA)), None)


REFERENCE = find_reference()
MISSING = (
    f"the captured client query corpora ({', '.join(CORPORA)}) are not available: put the project's "
    f"shared reference directory at ../shared/reference next to the repository or set ${ENV} "
    f"(looked in {', '.join(str(c) for c in candidates())})"
)
needs_reference = pytest.mark.skipif(REFERENCE is None, reason=MISSING)


def corpus_files() -> list[Path]:
    """Every captured query file, neuprint-python's then neuprintr's, each sorted; [] without the data."""
    if REFERENCE is None:
        return []
    return [p for name in CORPORA for p in sorted((REFERENCE / name).glob("*.cypher"))]


def corpus_params(files: list[Path], id_of=lambda p: f"{p.parent.name}/{p.name}") -> list:
    """``files`` as pytest parameters, or one skipped parameter naming what is missing (an empty
    parametrize would skip with pytest's vague 'got empty parameter set')."""
    if not files:
        return [pytest.param(None, id="no-reference", marks=pytest.mark.skip(reason=MISSING))]
    return [pytest.param(p, id=id_of(p)) for p in files]
