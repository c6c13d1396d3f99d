"""The command line as a newcomer meets it: the README's commands, the demo's hints, serve and info."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import duckdb
import pytest
import requests
from click.testing import CliRunner

import flatprint
import flatprint.server
from flatprint.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ACTIVATE = "source .venv/bin/activate"


def code_blocks(text: str) -> list[tuple[int, str]]:
    """(offset in text, body) of every fenced code block."""
    return [(match.start(1), match.group(1)) for match in re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)]


def shown_commands(text: str) -> list[tuple[int, str]]:
    """Every ``flatprint ...`` command line in the code blocks, comments dropped, continuations joined.

    ``flatprint export neo4j A B | export parquet A B`` is two commands (the README's shorthand).
    """
    commands = []
    for offset, body in code_blocks(text):
        body = body.replace("\\\n", " ")
        position = offset
        for line in body.splitlines(keepends=True):
            stripped = line.split("#", 1)[0].strip()
            if stripped.startswith("flatprint "):
                for part in stripped.split(" | "):
                    part = part.strip()
                    commands.append((position, part if part.startswith("flatprint ") else f"flatprint {part}"))
            position += len(line)
    return commands


def resolve(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The (sub)command the words name, the command path, and the words after it."""
    command, path = main, []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    return command, path, words


def test_the_docs_show_commands_at_all():
    readme = (ROOT / "README.md").read_text()
    names = {resolve(cmd.split()[1:])[1][0] for _, cmd in shown_commands(readme)}
    # every top-level command appears in the README's command list
    assert names == set(main.commands), names ^ set(main.commands)


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_documented_command_and_option_exists(doc):
    runner = CliRunner()
    for _, line in shown_commands(doc.read_text()):
        command, path, rest = resolve(line.split()[1:])
        assert path, f"{doc.name}: {line!r} names no flatprint subcommand"
        assert not isinstance(command, click.Group), f"{doc.name}: {line!r} stops at the group {path}"
        # --help through the real entry point: the command loads and documents every option shown
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (line, result.output)
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(rest)):
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", result.output), (
                f"{doc.name}: {line!r} shows {option}, which `flatprint {' '.join(path)}` does not have"
            )


def test_readme_says_how_to_activate_before_the_first_command():
    readme = (ROOT / "README.md").read_text()
    first_command = shown_commands(readme)[0][0]
    first_import = readme.index("from flatprint import")
    activate = readme.find(ACTIVATE)
    assert activate != -1, f"the README never says `{ACTIVATE}`"
    assert activate < first_command and activate < first_import
    # the demo that creates .venv comes first, and the activation line is inside a code block
    assert readme.index("make demo") < activate
    assert any(ACTIVATE in body for _, body in code_blocks(readme))


def test_the_activation_line_names_the_venv_of_the_running_interpreter():
    from flatprint.cli import activation_command

    if sys.prefix == sys.base_prefix:
        assert activation_command() is None
        pytest.skip("not running in a virtualenv: nothing to activate")
    script = activation_command().removeprefix("source ")
    assert Path(script) == Path(sys.prefix) / "bin" / "activate"
    assert Path(script).is_file()
    # activating it puts this interpreter's `flatprint` first on PATH
    found = subprocess.run(
        ["bash", "-c", f"source {script} && command -v flatprint"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")},
    )
    assert found.returncode == 0 and Path(found.stdout.strip()) == Path(sys.prefix) / "bin" / "flatprint"


@pytest.fixture
def demo_home(tmp_path, monkeypatch, release_dir, store_path):
    """A FLATPRINT_HOME whose demo release and store already exist, so `demo` goes straight to its hints."""
    demo = tmp_path / "home" / "demo"
    (demo / "release").mkdir(parents=True)
    shutil.copy(release_dir / "manifest.json", demo / "release" / "manifest.json")
    shutil.copy(store_path, demo / "male-cns-v0.9.duckdb")
    monkeypatch.setenv("FLATPRINT_HOME", str(tmp_path / "home"))
    return demo


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not running in a virtualenv: nothing to activate")
def test_demo_prints_the_activation_line_before_it_serves(demo_home, monkeypatch):
    def fake_serve(specs, port, echo, **_):
        assert specs == [str(demo_home / "male-cns-v0.9.duckdb")] and port == 8443
        echo("SERVING NOW")

    monkeypatch.setattr(flatprint.server, "serve", fake_serve)
    activate = f"source {Path(sys.prefix) / 'bin' / 'activate'}"
    result = CliRunner().invoke(main, ["demo"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert activate in lines, result.output  # on a line of its own, unwrapped, ready to copy
    assert lines.index(activate) < lines.index("SERVING NOW")

    without_serving = CliRunner().invoke(main, ["demo", "--no-serve"], terminal_width=80)
    assert without_serving.exit_code == 0, without_serving.output
    assert activate in [line.strip() for line in without_serving.output.splitlines()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli_env(tmp_path) -> dict:
    # the flatprint under test (this test run's), and certificates under tmp_path
    return {
        **os.environ,
        "PYTHONPATH": str(Path(flatprint.__file__).parents[1]),
        "FLATPRINT_HOME": str(tmp_path / "home"),
    }


def test_serve_on_a_busy_port_is_one_clear_line(store_path, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "flatprint.cli", "serve", str(store_path), "--port", str(port)],
            capture_output=True,
            text=True,
            env=cli_env(tmp_path),
            timeout=120,
        )
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert str(port) in errors[0] and "--port" in errors[0] and "in use" in errors[0]
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stdout + result.stderr
    assert "REQUESTS_CA_BUNDLE" not in result.stdout  # nothing that suggests a server is up


def test_serve_says_serving_only_once_the_port_takes_connections(store_path, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flatprint.cli", "serve", str(store_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
    )
    try:
        printed = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"serve exited: {process.wait()} {process.stderr.read()}"
            printed.append(line)
            if line.startswith("serving"):
                break
        # at this moment the port already accepts connections (they wait for the server to take them)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        bundle = [line for line in printed if line.startswith("export REQUESTS_CA_BUNDLE=")]
        assert bundle, printed
        cert = bundle[0].strip().split("=", 1)[1]
        assert Path(cert).is_file() and Path(cert).is_relative_to(tmp_path)
        with requests.Session() as session:
            answer = session.get(f"https://localhost:{port}/api/dbmeta/version", verify=cert, timeout=60)
        assert answer.status_code == 200 and "flatprint" in answer.json()["Version"]
    finally:
        process.kill()  # not terminate: a graceful stop waits for the explorer's warm-up to finish
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def table_cells(output: str) -> dict[str, str]:
    """First line of each row of a rich box table: label -> the value cell, padding included."""
    cells = {}
    for line in output.splitlines():
        parts = line.split("│")
        if len(parts) == 4 and parts[1].strip() and parts[1].strip() not in cells:
            cells[parts[1].strip()] = parts[2]
    return cells


def test_info_left_aligns_text_and_right_aligns_numbers(store_path):
    result = CliRunner().invoke(main, ["info", str(store_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    cells = table_cells(result.output)
    with duckdb.connect(str(store_path), read_only=True) as con:
        segments = con.execute("SELECT count(*) FROM segments").fetchall()[0][0]
        neurons = con.execute("SELECT count(*) FROM segments WHERE is_neuron").fetchall()[0][0]
    assert len(cells["segments"]) > len(f"{segments:,}") + 2  # the column is wider than the numbers
    for label, value in (("segments", segments), ("neurons", neurons)):
        cell = cells[label]
        assert cell.endswith(f" {value:,} ") and cell.startswith("  "), (label, cell)
    for label in ("ingested", "source checksum", "description"):
        cell = cells[label]
        assert cell.strip() and cell.startswith(" ") and not cell.startswith("  "), (label, cell)
