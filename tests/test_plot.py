"""trainctl.cli.plot: a PNG from a run directory, the terminal charts, the fallback without
matplotlib, and clear errors for runs with nothing to plot."""

from __future__ import annotations

import math
import re
import struct
import sys

import pytest

from trainctl.runs.rundir import RunDir
from trainctl.runs.atomic import atomic_write_json
from trainctl.errors import ArtifactError, TrainctlError
from trainctl.cli.plot import INSTALL_HINT, Panel, Series, collect_panels, plot_run, render_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(tmp_path, epochs=12, *, weights=True, extra=None):
    run = RunDir.create(tmp_path, "demo", tmp_path / "run")
    run.write_config("name: demo\n")
    run.write_model({"format": "trainctl-model/1", "layers": []})
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "loss": 2 * math.exp(-epoch / 4) + 0.1, "acc": 1 - math.exp(-epoch / 3),
               "val_loss": 2 * math.exp(-epoch / 5) + 0.2, "val_acc": 0.9 - math.exp(-epoch / 3)}
        if weights:
            row["dense_Dense1/kernel"] = 3 - 2 * math.exp(-epoch / 3)
        row.update((extra or {}).get(epoch, {}))
        run.append_history(row)
    if weights:
        atomic_write_json(run.file("weight_history.json"), {
            "epochs": list(range(1, epochs + 1)),
            "weights": {"dense_Dense1/kernel": [[3 - 2 * math.exp(-e / 3)] for e in range(1, epochs + 1)],
                        "dense_Dense1/bias": [[2 * (1 - math.exp(-e / 3))] for e in range(1, epochs + 1)]},
            "reference": {"dense_Dense1/kernel": 3.0, "dense_Dense1/bias": 2.0}})
    return run.path


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def test_png_is_written_to_the_run_directory_by_default(tmp_path):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path)
    message = plot_run(run, None, False)
    path = run / "plot.png"
    assert message == f"plot written to {path}"
    width, height = png_size(path.read_bytes())
    assert (width, height) == (1280, 800)  # two columns, two rows of panels at 100 dpi
    assert not [p.name for p in run.iterdir() if p.name.startswith(".tmp-")]  # atomic write


def test_png_to_a_chosen_file_and_a_missing_directory_is_a_clear_error(tmp_path):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path, weights=False)
    out = tmp_path / "curves.png"
    plot_run(run, out, False)
    assert png_size(out.read_bytes()) == (1280, 400)  # loss and acc side by side
    assert not (run / "plot.png").exists()
    with pytest.raises(ArtifactError, match="cannot write .*nowhere.*curves.png"):
        plot_run(run, tmp_path / "nowhere" / "curves.png", False)


def test_panels_pair_train_and_validation_and_put_weights_against_references(tmp_path):
    panels = collect_panels(make_run(tmp_path))
    assert [p.title for p in panels] == ["loss", "acc", "weights vs reference"]
    assert [s.name for s in panels[0].series] == ["loss", "val_loss"]
    assert panels[0].series[0].x == [float(e) for e in range(1, 13)]
    weights = panels[2]
    assert [s.name for s in weights.series] == ["dense_Dense1/kernel", "dense_Dense1/bias"]
    assert weights.references == [("dense_Dense1/kernel (reference)", 3.0), ("dense_Dense1/bias (reference)", 2.0)]


def test_terminal_chart_names_every_series_and_is_stable(tmp_path):
    run = make_run(tmp_path)
    text = plot_run(run, None, True)
    for name in ("loss", "val_loss", "acc", "val_acc", "dense_Dense1/kernel", "dense_Dense1/bias",
                 "dense_Dense1/kernel (reference) = 3", "dense_Dense1/bias (reference) = 2", "epoch"):
        assert name in text
    assert plot_run(run, None, True) == text
    assert not (run / "plot.png").exists()
    lines = text.splitlines()
    assert lines[0].strip() == "loss" and "weights vs reference" in [line.strip() for line in lines]
    assert max(len(line) for line in lines) <= 60 + 16  # plot area + rulers
    assert "\x1b[" not in text
    assert "\x1b[" in plot_run(run, None, True, color=True)


def _plot_area(text: str) -> list[str]:
    """The rows inside the chart's frame (between ┌ and └), without the rulers."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if "┌" in line)
    bottom = next(i for i, line in enumerate(lines) if "└" in line)
    return [re.split("[┤┼│]", line, maxsplit=1)[1] for line in lines[top + 1:bottom]]


def test_text_chart_draws_lines_references_gaps_and_axis_labels():
    panel = Panel("t", [Series("a", [1, 2, 3], [0, 1, 2]), Series("val_a", [1, 2, 3], [2, math.nan, 1])],
                  [("ref", 1.5)])
    text = render_chart(panel, width=30, height=9)
    area = "".join(_plot_area(text))
    assert area.count("*") > 10  # a is drawn as a line through its 3 points
    assert area.count("o") == 2  # val_a: two lone points; the nan breaks the line
    assert sum("┈" in row for row in _plot_area(text)) == 1  # the reference, one dotted row
    lines = text.splitlines()
    assert lines[0].strip() == "t"
    assert lines[-2].split() == ["t", "epoch"]  # y label at the left, x label under the axis
    assert lines[-1].strip() == "* a   o val_a   ┄ ref = 1.5"
    ticks = lines[-3].split()
    assert ticks == ["1", "2", "3"]  # whole epochs


def test_text_chart_of_a_constant_single_point_series():
    text = render_chart(Panel("lr", [Series("lr", [1], [0.01])]), width=10, height=3)
    assert "0.01000┤" in text and "0.01100┤" in text and "0.00900┤" in text  # ±10%, not ±1
    assert "".join(_plot_area(text)).count("*") == 1
    assert render_chart(Panel("x", [Series("x", [1, 2], [math.inf, math.nan])])) == "x\n  (no finite values)"


def test_png_axes_are_titled_and_labelled(tmp_path):
    pytest.importorskip("matplotlib")
    from trainctl.cli.plot import build_figure

    figure = build_figure(collect_panels(make_run(tmp_path)), title="demo/run")
    labelled = [(ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) for ax in figure.axes if ax.get_visible()]
    assert labelled == [("loss", "epoch", "loss"), ("acc", "epoch", "acc"), ("weights vs reference", "epoch", "value")]


def test_out_png_without_matplotlib_is_an_error_and_terminal_with_out_is_refused(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    with pytest.raises(TrainctlError, match="--terminal draws in the terminal; --out writes a PNG"):
        plot_run(run, tmp_path / "x.png", True)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(TrainctlError, match=r"needs matplotlib, which is not installed; install it with: "
                                            r"pip install 'trainctl\[plot\]'"):
        plot_run(run, tmp_path / "x.png", False)
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_falls_back_to_the_terminal(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    text = plot_run(run, None, False)
    assert text.splitlines()[0] == INSTALL_HINT
    assert text.split("\n", 1)[1] == plot_run(run, None, True)
    assert not (run / "plot.png").exists()


def test_non_finite_history_values_are_gaps(tmp_path):
    run = make_run(tmp_path, epochs=4, weights=False, extra={4: {"loss": math.nan, "val_loss": math.inf}})
    text = plot_run(run, None, True)
    assert "loss" in text and "nan" not in text and "inf" not in text
    pytest.importorskip("matplotlib")
    plot_run(run, None, False)
    assert (run / "plot.png").read_bytes()[:8] == PNG_SIGNATURE


def test_multi_value_weights_show_their_first_values(tmp_path):
    run = make_run(tmp_path, epochs=3, weights=False)
    atomic_write_json(run / "weight_history.json", {
        "epochs": [1, 2, 3], "weights": {"k": [[float(i + e) for i in range(10)] for e in range(3)]}})
    panel = collect_panels(run)[-1]
    assert panel.title == "weights" and [s.name for s in panel.series] == [f"k[{i}]" for i in range(6)]
    assert panel.series[2].y == [2.0, 3.0, 4.0]


def test_a_run_without_history_is_a_clear_error(tmp_path):
    run = RunDir.create(tmp_path, "empty", tmp_path / "run")
    run.write_config("name: empty\n")
    run.write_model({"format": "trainctl-model/1"})
    with pytest.raises(TrainctlError, match=r"run: no training history to plot \(history.csv is missing"):
        plot_run(run.path, None, True)
    with pytest.raises(TrainctlError, match="run directory not found"):
        plot_run(tmp_path / "nope", None, True)


def test_damaged_weight_history_is_a_clear_error(tmp_path):
    run = make_run(tmp_path, epochs=3, weights=False)
    atomic_write_json(run / "weight_history.json", {"epochs": [1, 2, 3], "weights": {"k": [[1.0], [2.0]]}})
    with pytest.raises(ArtifactError, match=r"weight_history.json: weights.k must hold one non-empty list"):
        plot_run(run, None, True)
    (run / "weight_history.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"weight_history.json:1:2: invalid JSON"):
        plot_run(run, None, True)
