"""The README as a new user reads it: every Python block runs as pasted (from the repository
root, each in a fresh interpreter state), and the extras table names every extra."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.M | re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_as_pasted(index, tmp_path, monkeypatch):
    # From a copy of the root's layout (configs/ and data/ linked), so runs/ lands in tmp.
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    assert "Traceback" not in out.getvalue()


def test_the_first_block_learns_and_saves_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[0], "README.md python block 1", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().splitlines()
    assert any(line.startswith("Total params: 259") for line in printed)  # 4·32+32 + 32·3+3
    assert any(line.startswith("epoch 1/10  loss ") for line in printed)  # verbose=2: a line per epoch
    assert float(printed[-1]) > 0.9  # quadrant classes are easy; chance is 0.5
    assert sorted(p.name for p in (tmp_path / "runs" / "my-model").iterdir()) == [
        "history.csv", "model.json", "optimizer.safetensors", "weights.safetensors"]


def test_the_readme_lists_every_extra_and_the_code_names_only_real_ones():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    table = README[README.index("<!-- extras -->"):README.index("<!-- /extras -->")]
    listed = re.findall(r"^\| `([a-z0-9_-]+)` \|", table, re.M)
    assert sorted(listed) == sorted(extras)
    bundled = {name for requirement in extras["all"] for name in re.findall(r"trainctl\[([^\]]+)\]", requirement)
               for name in name.split(",")}
    assert bundled == set(extras) - {"all", "test", "bench"}  # bench: the peers of bench/, not a user feature
    named_in_code = {name for path in (ROOT / "trainctl").rglob("*.py")
                     for name in re.findall(r"trainctl\[([a-z0-9_,-]+)\]", path.read_text(encoding="utf-8"))}
    assert named_in_code and named_in_code <= set(extras)


def test_installed_extras_satisfy_their_pins():
    """What an extra pins is what the suite ran against (checked for the extras present)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    checked = 0
    for name, requirements in extras.items():
        for text in requirements:
            requirement = Requirement(text.split("#")[0])
            if requirement.name == "trainctl":
                continue
            try:
                installed = version(requirement.name)
            except PackageNotFoundError:
                continue
            assert requirement.specifier.contains(installed, prereleases=True), (name, text, installed)
            checked += 1
    assert checked >= 2
