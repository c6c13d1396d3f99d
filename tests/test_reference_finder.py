"""tests/reference.py on other clones: it finds ../shared/reference next to the repository (or next to
the main checkout of a git worktree, or at $FLATPRINT_REFERENCE), and without it the corpus tests
skip with a reason that says what is missing and where it was looked for."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def load_finder(clone: Path, monkeypatch, env: Path | None = None):
    """tests/reference.py as it would import inside ``clone`` (a copy of it placed there)."""
    (clone / "tests").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "reference.py", clone / "tests" / "reference.py")
    if env is None:
        monkeypatch.delenv("FLATPRINT_REFERENCE", raising=False)
    else:
        monkeypatch.setenv("FLATPRINT_REFERENCE", str(env))
    name = f"reference_in_{abs(hash(str(clone)))}"
    spec = importlib.util.spec_from_file_location(name, clone / "tests" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_reference(where: Path) -> Path:
    for corpus in ("neuprint-queries", "neuprintr-queries"):
        (where / corpus).mkdir(parents=True)
        (where / corpus / f"{corpus}__01.cypher").write_text("// captured\nMATCH (n:Neuron) RETURN n.bodyId\n")
    return where


def test_a_clone_without_the_reference_skips_with_a_reason(tmp_path, monkeypatch):
    finder = load_finder(tmp_path / "clone", monkeypatch)
    assert finder.REFERENCE is None and finder.corpus_files() == []
    assert "../shared/reference" in finder.MISSING and "FLATPRINT_REFERENCE" in finder.MISSING
    assert str(tmp_path / "shared" / "reference") in finder.MISSING  # where it looked
    [param] = finder.corpus_params([])
    [mark] = param.marks
    assert mark.name == "skip" and mark.kwargs["reason"] == finder.MISSING


def test_reference_next_to_the_clone_is_found(tmp_path, monkeypatch):
    make_reference(tmp_path / "shared" / "reference")
    finder = load_finder(tmp_path / "clone", monkeypatch)
    assert finder.REFERENCE == tmp_path / "shared" / "reference"
    assert [p.name for p in finder.corpus_files()] == ["neuprint-queries__01.cypher", "neuprintr-queries__01.cypher"]
    assert [p.id for p in finder.corpus_params(finder.corpus_files())] == [
        "neuprint-queries/neuprint-queries__01.cypher",
        "neuprintr-queries/neuprintr-queries__01.cypher",
    ]


def test_worktree_finds_the_reference_of_its_main_checkout(tmp_path, monkeypatch):
    make_reference(tmp_path / "shared" / "reference")
    main_git = tmp_path / "main" / ".git"
    (main_git / "worktrees" / "wt1").mkdir(parents=True)
    (main_git / "worktrees" / "wt1" / "commondir").write_text("../..\n")
    worktree = tmp_path / "elsewhere" / "wt1"
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text(f"gitdir: {main_git / 'worktrees' / 'wt1'}\n")
    finder = load_finder(worktree, monkeypatch)
    assert finder.REFERENCE == tmp_path / "shared" / "reference"


def test_environment_variable_wins(tmp_path, monkeypatch):
    make_reference(tmp_path / "shared" / "reference")
    chosen = make_reference(tmp_path / "mine")
    finder = load_finder(tmp_path / "clone", monkeypatch, env=chosen)
    assert finder.REFERENCE == chosen


@pytest.mark.parametrize("module", ["test_cypher_parser", "test_cypher_corpus", "test_fuzz"])
def test_corpus_test_files_use_the_finder(module):
    text = (HERE / f"{module}.py").read_text()
    assert "from reference import" in text and "/shared/reference" not in text
