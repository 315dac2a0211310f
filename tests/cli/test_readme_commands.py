"""The README's concrete `sparsesel attribute` commands run exactly as written (in a scratch folder)."""

import json
import re
import shlex
from pathlib import Path

import pytest

from sparsesel.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands(name: str) -> list[str]:
    """Lines of the README's code blocks that run `sparsesel NAME` (synopsis lines with `|` or `[` excluded)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(f"sparsesel {name} ") and not re.search(r"[|\[]", line)]


def test_the_readme_shows_an_attribute_command():
    commands = readme_commands("attribute")
    assert commands, "the README lost its concrete `sparsesel attribute` command"
    assert any("--anchor-draws 8" in command and "--schedule sic" in command for command in commands)


@pytest.mark.parametrize("command", readme_commands("attribute"))
def test_readme_attribute_command_runs_as_written(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # --out is relative: the outputs land in the scratch folder
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, capsys.readouterr().err
    out = Path(argv[argv.index("--out") + 1])
    record = json.loads((out / "attribution.json").read_text())
    assert len(record["selected"]) == int(argv[argv.index("--k") + 1])
    assert record["options"]["anchor_draws"] == 8 and record["gradient_evaluations"] == 64  # 8 rounds x 8 steps
    assert (out / "heatmap.png").is_file()
