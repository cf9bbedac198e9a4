"""trainctl.cli.render: summary anchors, progress modes, throttling, running means, tables."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from trainctl.train.callbacks import CallbackList
from trainctl.errors import ConfigError, TrainctlError
from trainctl.cli.render import (
    ProgressDisplay,
    format_duration,
    format_shape,
    format_value,
    human_bytes,
    human_count,
    mean_std,
    render_compare_table,
    render_error,
    render_metrics_table,
    render_predictions,
    render_summary,
    render_summary_line,
)

ESC = "\x1b"
COLOR_CODE = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m")


def plain_console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width, color_system=None)


def terminal_console(width: int = 120, **kwargs) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, **kwargs)


class FakeClock:
    def __init__(self, start: float = 100.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "shape, text",
    [
        ((None, 32), "[null,32]"),
        ((None, 28, 28, 1), "[null,28,28,1]"),
        ((784, 32), "[784,32]"),
        ((32,), "[32]"),
        ([None, 10], "[null,10]"),
        ((), "[]"),
        ((np.int64(3), None), "[3,null]"),
    ],
)
def test_format_shape(shape, text):
    assert format_shape(shape) == text


@pytest.mark.parametrize(
    "value, text",
    [
        (0.12344, "0.1234"),
        (0.0, "0.0000"),
        (-2.5, "-2.5000"),
        (1e-6, "1.000e-06"),
        (3.2e7, "3.200e+07"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (np.float32(0.5), "0.5000"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_duration_and_units():
    assert format_duration(0.421) == "0.42s"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(125) == "2:05"
    assert format_duration(3725) == "1:02:05"
    assert human_bytes(512) == "512 B"
    assert human_bytes(101800) == "99.4 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_count(50800) == "50.8K"
    assert human_count(1.2e9) == "1.2G"
    assert human_count(999) == "999"


def test_mean_std_matches_numpy_sample_std():
    values = [0.31, 0.27, 0.35, 0.29]
    mean, std = np.mean(values), np.std(values, ddof=1)
    assert mean_std(values) == f"{mean:.4f} ± {std:.4f}"
    assert mean_std([0.5]) == "0.5000"
    assert mean_std([]) == "–"


# --------------------------------------------------------------------------- summary

TFJS_ROWS = [
    SimpleNamespace(name="dense_Dense1", class_name="Dense", output_shape=(None, 32), n_params=25120),
    SimpleNamespace(name="dense_Dense2", class_name="Dense", output_shape=(None, 10), n_params=330),
]
TFJS_TOTALS = SimpleNamespace(total=25450, trainable=25450, non_trainable=0)


def test_summary_anchors_exact():
    console = plain_console()
    render_summary(console, TFJS_ROWS, TFJS_TOTALS)
    text = console.file.getvalue()
    assert ESC not in text
    for header in ("Layer (type)", "Output shape", "Param #"):
        assert header in text
    # Each row keeps its three cells together, in order, on one line.
    assert re.search(r"dense_Dense1 \(Dense\)\s*│\s*\[null,32\]\s*│\s*25120\s*│", text)
    assert re.search(r"dense_Dense2 \(Dense\)\s*│\s*\[null,10\]\s*│\s*330\s*│", text)
    lines = text.splitlines()
    assert "Total params: 25450" in lines
    assert "Trainable params: 25450" in lines
    assert "Non-trainable params: 0" in lines
    assert lines.index("Total params: 25450") < lines.index("Non-trainable params: 0")


def test_summary_accepts_dicts_weights_and_extras():
    rows = [
        {"name": "conv2d_Conv2D1", "class_name": "Conv2D", "output_shape": (None, 26, 26, 8), "n_params": 80}
    ]
    console = plain_console()
    render_summary(
        console,
        rows,
        {"total": 80, "trainable": 72, "non_trainable": 8},
        weights=[("dense_Dense1/kernel", (784, 32)), ("dense_Dense1/bias", (32,))],
        extras={"Optimizer": "sgd", "Weights size": f"320 bytes ({human_bytes(320)})"},
    )
    text = console.file.getvalue()
    assert "conv2d_Conv2D1 (Conv2D)" in text and "[null,26,26,8]" in text
    assert "Trainable params: 72" in text and "Non-trainable params: 8" in text
    assert re.search(r"Weight\s*┃\s*Shape", text)
    assert re.search(r"dense_Dense1/kernel\s*│\s*\[784,32\]", text)
    assert re.search(r"dense_Dense1/bias\s*│\s*\[32\]", text)
    lines = text.splitlines()
    assert lines[-2:] == ["Optimizer: sgd", "Weights size: 320 bytes (320 B)"]


def test_summary_without_weights_has_no_weight_table():
    console = plain_console()
    render_summary(console, TFJS_ROWS, TFJS_TOTALS)
    assert "Weight" not in console.file.getvalue()


# --------------------------------------------------------------------------- progress helpers

PARAMS = {"epochs": 3, "initial_epoch": 0, "steps": 4, "samples": 100, "batch_size": 32, "metrics": ["acc"]}
BATCH_SIZES = [32, 32, 32, 4]


def run_fake_training(display, clock, *, epochs=2, compile_in_first=True, epoch_logs=None):
    """Drive the display like training.py would, through a CallbackList, 0.5 s per batch."""
    callbacks = CallbackList([display])
    callbacks.set_params(dict(PARAMS, epochs=epochs))
    callbacks.on_train_begin({})
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch, {})
        for batch, size in enumerate(BATCH_SIZES):
            callbacks.on_batch_begin(batch, {"batch": batch, "size": size})
            if compile_in_first and epoch == 0 and batch == 0:
                callbacks.on_compile_begin({})
                clock.now += 2.0
                callbacks.on_compile_end({})
            clock.now += 0.5
            callbacks.on_batch_end(batch, {"batch": batch, "size": size, "loss": 1.0 / (batch + 1), "acc": 0.5})
        logs = (epoch_logs or {}).get(epoch) or {
            "loss": 0.25 / (epoch + 1),
            "acc": 0.9,
            "val_loss": 0.3 / (epoch + 1),
            "val_acc": 0.85,
        }
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end({})


# --------------------------------------------------------------------------- plain mode


def test_auto_mode_follows_the_terminal():
    assert ProgressDisplay(plain_console()).mode == "plain"
    assert ProgressDisplay(terminal_console()).mode == "rich"
    with pytest.raises(ValueError, match="unknown progress mode"):
        ProgressDisplay(plain_console(), "fancy")


def test_plain_mode_one_line_per_epoch():
    console, clock = plain_console(), FakeClock()
    display = ProgressDisplay(console, "plain", clock=clock)
    run_fake_training(display, clock)
    text = console.file.getvalue()
    assert ESC not in text
    assert text.splitlines() == [
        "compiling kernels…",
        "epoch 1/2  loss 0.2500  acc 0.9000  val_loss 0.3000  val_acc 0.8500  4.0s",
        "epoch 2/2  loss 0.1250  acc 0.9000  val_loss 0.1500  val_acc 0.8500  2.0s",
    ]


def test_plain_mode_orders_loss_then_metrics_then_validation():
    console, clock = plain_console(), FakeClock()
    display = ProgressDisplay(console, "plain", clock=clock)
    logs = {0: {"val_acc": 0.5, "lr": 0.01, "val_loss": 0.7, "acc": 0.6, "loss": 0.8}}
    run_fake_training(display, clock, epochs=1, compile_in_first=False, epoch_logs=logs)
    assert console.file.getvalue().splitlines() == [
        "epoch 1/1  loss 0.8000  acc 0.6000  lr 0.0100  val_loss 0.7000  val_acc 0.5000  2.0s"
    ]


def test_plain_lines_are_not_wrapped_on_narrow_consoles():
    console, clock = plain_console(width=30), FakeClock()
    run_fake_training(ProgressDisplay(console, "plain", clock=clock), clock, epochs=1)
    lines = console.file.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 1/1  loss") and lines[1].endswith("4.0s")


# --------------------------------------------------------------------------- jsonl mode


def test_jsonl_mode_emits_one_object_per_epoch_and_one_at_train_end():
    console, clock = plain_console(), FakeClock()
    display = ProgressDisplay(console, "jsonl", clock=clock)
    run_fake_training(display, clock)
    lines = console.file.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses, nothing else printed
    assert [r["event"] for r in records] == ["epoch_end", "epoch_end", "train_end"]
    first, second, end = records
    assert first == {
        "event": "epoch_end",
        "epoch": 1,
        "epochs": 2,
        "loss": 0.25,
        "acc": 0.9,
        "val_loss": 0.3,
        "val_acc": 0.85,
        "seconds": 4.0,
    }
    assert second["epoch"] == 2 and second["seconds"] == 2.0
    assert end["epochs_completed"] == 2
    assert end["seconds"] == 6.0
    assert end["val_loss"] == pytest.approx(0.15)  # falls back to the last epoch's logs


def test_jsonl_non_finite_values_become_null():
    console, clock = plain_console(), FakeClock()
    display = ProgressDisplay(console, "jsonl", clock=clock)
    logs = {0: {"loss": float("nan"), "val_loss": float("inf")}}
    run_fake_training(display, clock, epochs=1, compile_in_first=False, epoch_logs=logs)
    first = json.loads(console.file.getvalue().splitlines()[0])
    assert first["loss"] is None and first["val_loss"] is None


# --------------------------------------------------------------------------- quiet mode


def test_quiet_mode_prints_nothing(capsys):
    for console in (plain_console(), terminal_console()):
        clock = FakeClock()
        display = ProgressDisplay(console, "quiet", clock=clock)
        run_fake_training(display, clock)
        display.close()
        assert console.file.getvalue() == ""
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------- rich mode


def test_rich_mode_keeps_one_line_per_epoch_and_shows_compile_status():
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock)
    run_fake_training(display, clock)
    text = console.file.getvalue()
    assert "compiling kernels…" in text
    assert "batch 4/4" in text and "━" in text and "ETA" in text and "samples/s" in text
    # The finished epoch lines are the last things printed (live lines are transient).
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    finished = [line for line in plain.splitlines() if "val_loss" in line]
    bar = "━" * 20
    # Keras's step counter and time per step; the 2 s compile is left out of the rate.
    assert finished == [
        f"Epoch 1/2  4/4 {bar} 4.0s 500ms/step  loss 0.2500  acc 0.9000  val_loss 0.3000  val_acc 0.8500",
        f"Epoch 2/2  4/4 {bar} 2.0s 500ms/step  loss 0.1250  acc 0.9000  val_loss 0.1500  val_acc 0.8500",
    ]
    assert text.rstrip().endswith("val_acc 0.8500\x1b[0m")


def one_epoch_training(refresh_interval: float):
    """A rich ProgressDisplay on a terminal console and a fake clock, driven through a
    CallbackList as the loop drives it, its one-epoch training begun."""
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock, refresh_interval=refresh_interval)
    callbacks = CallbackList([display])
    callbacks.set_params(dict(PARAMS, epochs=1))
    callbacks.on_train_begin({})
    return console, clock, display, callbacks


def test_rich_rate_and_eta_leave_out_compile_time():
    console, clock, display, callbacks = one_epoch_training(0.0)
    callbacks.on_epoch_begin(0, {})
    callbacks.on_compile_begin({})
    clock.now += 30.0
    callbacks.on_compile_end({})
    clock.now += 1.0
    callbacks.on_batch_end(0, {"batch": 0, "size": 32, "loss": 1.0})
    text = console.file.getvalue()
    # 32 samples in 1 s of compute (not 31 s); 3 batches left at 1 s each.
    assert "32 samples/s" in text and "ETA 3.0s" in text
    display.close()


def test_rich_unknown_length_stream_shows_count_and_throughput_without_total():
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock, refresh_interval=0.0)
    display.set_params(dict(PARAMS, steps=None, epochs=1))
    display.on_train_begin({})
    display.on_epoch_begin(0, {})
    for batch in range(7):
        clock.now += 0.25
        display.on_batch_end(batch, {"batch": batch, "size": 8, "loss": 0.5})
    display.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert "batch 7 · loss 0.5000 · 32 samples/s" in text
    assert "ETA" not in text and "━" not in text and "batch 7/" not in text


def test_throttle_limits_refreshes_to_the_interval():
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock, refresh_interval=0.1)
    display.set_params(dict(PARAMS, steps=10_000, epochs=1))
    display.on_train_begin({})
    display.on_epoch_begin(0, {})
    assert display.refreshes == 1  # the empty bar at epoch start
    for batch in range(10_000):  # 1 ms per batch: 10 s -> about 100 redraws, not 10,000
        clock.now += 0.001
        display.on_batch_end(batch, {"batch": batch, "size": 1, "loss": 0.1})
    # At most one redraw per interval (+1 at epoch start); and it does keep redrawing.
    assert 85 <= display.refreshes <= 101
    display.close()


def test_no_refresh_while_the_clock_stands_still():
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock)
    display.set_params(PARAMS)
    display.on_epoch_begin(0, {})
    before = console.file.tell()
    for batch in range(1000):
        display.on_batch_end(batch, {"batch": batch, "size": 1, "loss": 0.1})
    assert display.refreshes == 1
    assert console.file.tell() == before  # nothing written between refreshes
    display.close()


def test_running_mean_is_size_weighted_and_resets_each_epoch():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 64, size=50)
    losses = rng.random(50) * 3
    accs = rng.random(50)
    console, clock = terminal_console(), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock, refresh_interval=0.0)
    display.set_params(dict(PARAMS, steps=50))
    display.on_epoch_begin(0, {})
    for batch in range(50):
        clock.now += 0.01
        display.on_batch_end(
            batch, {"batch": batch, "size": int(sizes[batch]), "loss": float(losses[batch]), "acc": float(accs[batch])}
        )
        if batch in (0, 9, 49):
            seen = slice(0, batch + 1)
            running = display.running_logs()
            assert running["loss"] == pytest.approx(np.average(losses[seen], weights=sizes[seen]), rel=1e-12)
            assert running["acc"] == pytest.approx(np.average(accs[seen], weights=sizes[seen]), rel=1e-12)
            assert set(running) == {"loss", "acc"}
    # The shown value is the running mean, not the last batch's.
    last_line = console.file.getvalue().rsplit("\x1b[2K", 1)[-1]
    expected = format_value(np.average(losses, weights=sizes))
    assert "batch 50/50" in last_line and f"loss {expected}" in last_line
    assert f"loss {format_value(losses[-1])}" not in last_line
    display.on_epoch_end(0, {"loss": 1.0})
    display.on_epoch_begin(1, {})
    assert display.running_logs() == {}
    display.close()


def test_close_restores_the_terminal_after_an_interrupted_epoch():
    console, clock = terminal_console(), FakeClock()
    with ProgressDisplay(console, "rich", clock=clock) as display:
        display.set_params(PARAMS)
        display.on_epoch_begin(0, {})
        display.on_compile_begin({})
    text = console.file.getvalue()
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l") >= 0  # cursor shown again
    assert display._live is None and display._status is None


def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    console, clock = terminal_console(color_system="truecolor"), FakeClock()
    run_fake_training(ProgressDisplay(console, "rich", clock=clock), clock)
    render_error(console, "bad")
    text = console.file.getvalue()
    assert "val_loss" in text and "error: bad" in text
    assert not COLOR_CODE.search(text)


def test_colors_are_used_when_allowed(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    console = terminal_console(color_system="standard")
    render_error(console, "bad")
    assert "\x1b[31m" in console.file.getvalue()


# --------------------------------------------------------------------------- errors and tables


def test_render_error_one_line_per_problem_markup_safe():
    console = plain_console(width=40)
    problems = [
        "cfg.yaml:3:5: model.layers.0.unit: unknown key 'unit'; did you mean 'units'?",
        "cfg.yaml:7:14: fit.batch_size: expected an integer, got [bold]32[/bold]",
    ]
    render_error(console, ConfigError(problems))
    render_error(console, "no such file: data/[train].csv")
    lines = console.file.getvalue().splitlines()
    assert lines == [f"error: {p}" for p in problems] + ["error: no such file: data/[train].csv"]


def test_render_error_accepts_a_plain_exception():
    console = plain_console()
    render_error(console, TrainctlError("run directory runs/x is damaged"))
    assert console.file.getvalue() == "error: run directory runs/x is damaged\n"


def test_render_metrics_table():
    console = plain_console()
    render_metrics_table(console, "evaluate runs/mlp", {"loss": 0.12344, "acc": 0.95, "val_[x]": 1e-7})
    text = console.file.getvalue()
    assert "evaluate runs/mlp" in text
    assert re.search(r"loss\s*│\s*0\.1234", text)
    assert re.search(r"acc\s*│\s*0\.9500", text)
    assert re.search(r"val_\[x\]\s*│\s*1\.000e-07", text)


COMPARE_ROWS = [
    {"config": "a", "lr": 0.1, "val_loss": mean_std([0.30, 0.32])},
    {"config": "b", "lr": 0.01, "val_loss": mean_std([0.20, 0.22])},
    {"config": "c", "lr": 0.001, "val_loss": None},
    {"config": "d", "lr": 0.5, "val_loss": 0.25},
]


def _column_order(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^│ (\w) ", text, flags=re.M)]


def test_render_compare_table_sorts_best_first_missing_last():
    console = plain_console()
    render_compare_table(console, COMPARE_ROWS, ["config", "lr", "val_loss"], "val_loss", "min")
    text = console.file.getvalue()
    assert _column_order(text) == ["b", "d", "a", "c"]
    assert "0.2100 ± 0.0141" in text and "–" in text
    console = plain_console()
    render_compare_table(console, COMPARE_ROWS, ["config", "lr", "val_loss"], "val_loss", "max")
    assert _column_order(console.file.getvalue()) == ["a", "d", "b", "c"]
    console = plain_console()
    render_compare_table(console, COMPARE_ROWS, ["config", "lr"], None)
    assert _column_order(console.file.getvalue()) == ["a", "b", "c", "d"]


def test_render_compare_table_rejects_unknown_column_and_mode():
    with pytest.raises(TrainctlError, match="cannot sort by 'val_acc'"):
        render_compare_table(plain_console(), COMPARE_ROWS, ["config", "val_loss"], "val_acc", "min")
    with pytest.raises(TrainctlError, match="'min' or 'max'"):
        render_compare_table(plain_console(), COMPARE_ROWS, ["config", "val_loss"], "val_loss", "best")


def test_library_modules_do_not_import_rich_or_render():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "trainctl"
    imports = re.compile(r"^\s*(?:from|import)\s+(?:rich\b|trainctl\.render\b|trainctl import render\b)", re.M)
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "render.py" and not str(path.relative_to(root)).startswith("cli")
        and imports.search(path.read_text())
    ]
    assert offenders == []


def _imported_modules(path, root):
    """(module imported, enclosing function or None) for every import in a file under
    `root` (the trainctl package), relative imports resolved and `from pkg import name`
    counted as importing pkg.name as well."""
    import ast

    package = ["trainctl", *path.relative_to(root).parent.parts]
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((alias.name, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                found.append((base, function))
                found.extend((f"{base}.{alias.name}", function) for alias in child.names)
            elif isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", "")) == "import_module":
                found.extend((arg.value, function) for arg in child.args[:1] if isinstance(arg, ast.Constant))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def test_no_library_module_imports_the_cli():
    """One way only: the CLI imports the library, never back. The library reaches a display
    through trainctl.train.display, where the package root registers the CLI's (lazily,
    inside _terminal_display); `python -m trainctl` (__main__) runs the CLI."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "trainctl"
    reaching = {}
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(root))
        if name.startswith("cli/"):
            continue
        cli = [(module, function) for module, function in _imported_modules(path, root)
               if module == "trainctl.cli" or module.startswith("trainctl.cli.")]
        if cli:
            reaching[name] = cli
    assert reaching.pop("__main__.py") == [("trainctl.cli", "main"), ("trainctl.cli.main", "main")]
    assert reaching.pop("__init__.py") == [("trainctl.cli.verbose", "_terminal_display"),
                                           ("trainctl.cli.verbose.TerminalDisplay", "_terminal_display")]
    assert reaching == {}


def test_the_import_walk_sees_every_spelling(tmp_path):
    """The walk above catches absolute, relative, from-package and import_module imports."""
    root = tmp_path / "trainctl"
    (root / "nn").mkdir(parents=True)
    probe = root / "nn" / "probe.py"
    probe.write_text("import trainctl.cli.render\nfrom .. import cli\nfrom ..cli.verbose import x\n"
                     "def f():\n    import importlib\n    importlib.import_module('trainctl.cli.app')\n")
    modules = {module for module, _ in _imported_modules(probe, root)}
    assert {"trainctl.cli.render", "trainctl.cli", "trainctl.cli.verbose", "trainctl.cli.app"} <= modules
    assert ("trainctl.cli.app", "f") in _imported_modules(probe, root)


def _kernel_import_offenders(root):
    """{kernels file: imports outside what kernels may import}: numpy, numba, math, each other,
    and the names trainctl.jit exports for them (imported from the package itself, not from
    its modules: the cache, the fpu control and the BLAS binding are plumbing, not kernels)."""
    from trainctl import jit

    allowed_jit = {"trainctl.jit", *(f"trainctl.jit.{name}" for name in jit.__all__)}

    def allowed(module):
        top = module.split(".")[0]
        return (top in ("__future__", "numpy", "numba", "math") or module in allowed_jit
                or module == "trainctl.kernels" or module.startswith("trainctl.kernels."))

    offenders = {}
    for path in sorted((root / "kernels").glob("*.py")):
        bad = sorted({module for module, _ in _imported_modules(path, root) if not allowed(module)})
        if bad:
            offenders[path.name] = bad
    return offenders


def test_kernels_import_only_numpy_numba_math_and_the_jit_exports():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "trainctl"
    assert sorted(path.name for path in (root / "kernels").glob("*.py"))  # the walk sees the kernels
    assert _kernel_import_offenders(root) == {}


def test_the_kernel_import_walk_catches_plumbing_and_stdlib(tmp_path):
    root = tmp_path / "trainctl"
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "probe.py").write_text(
        "import math\nimport numpy as np\nfrom numba import types\nfrom trainctl.jit import njit\n"
        "from . import codes\nimport os\nfrom trainctl.jit.cache import kernel_cache\nfrom trainctl import jit\n"
        "def f():\n    import ctypes\n")
    assert _kernel_import_offenders(root) == {"probe.py": ["ctypes", "os", "trainctl", "trainctl.jit.cache",
                                                           "trainctl.jit.cache.kernel_cache"]}


def test_render_summary_line_prints_line_and_run_path():
    console = plain_console(width=30)
    render_summary_line(console, "trained 5 epochs in 2.1s  loss 0.1234  acc [0.95]", "runs/tfjs-mlp/20250101-120000")
    assert console.file.getvalue().splitlines() == [
        "trained 5 epochs in 2.1s  loss 0.1234  acc [0.95]",
        "run: runs/tfjs-mlp/20250101-120000",
    ]


def test_render_predictions_classifier_shows_class_names_and_probabilities():
    from trainctl.runs.inference import Predictions

    outputs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    result = Predictions(outputs=outputs, classes=np.argmax(outputs, axis=1), class_names=["cat", "dog"])
    console = plain_console()
    render_predictions(console, result, max_rows=2)
    text = console.file.getvalue()
    assert re.search(r"#\s*┃\s*class\s*┃\s*p_cat\s*┃\s*p_dog", text)
    assert re.search(r"0\s*│\s*dog\s*│\s*0\.1\s*│\s*0\.9\s*│", text)
    assert re.search(r"1\s*│\s*cat\s*│\s*0\.8\s*│\s*0\.2\s*│", text)
    assert "0.7" not in text  # third row elided
    assert "… 1 more rows of 3; --output FILE writes them all" in text


def test_render_predictions_regression_elides_wide_outputs():
    from trainctl.runs.inference import Predictions

    outputs = np.arange(24, dtype=np.float32).reshape(2, 12)
    console = plain_console(width=200)
    render_predictions(console, Predictions(outputs=outputs, classes=None, class_names=None))
    text = console.file.getvalue()
    assert "y9" in text and "y10" not in text and "… 2 more" in text
    assert re.search(r"1\s*│\s*12\s*│\s*13\s*│", text)
    assert "class" not in text and "more rows" not in text


def test_compile_announced_before_the_first_epoch_as_the_loop_does():
    """training.fit emits on_compile_begin before on_epoch_begin and ends it after batch 0."""
    console, clock, display, callbacks = one_epoch_training(0.0)
    callbacks.on_compile_begin({})
    clock.now += 5.0  # compiling before the epoch: not part of the epoch at all
    callbacks.on_epoch_begin(0, {})
    assert display._live is None and display._status is not None  # spinner only, no bar yet
    callbacks.on_batch_begin(0, {"batch": 0, "size": 32})
    clock.now += 10.0  # the first batch is mostly compilation
    callbacks.on_compile_end({})
    assert display._status is None and display._live is not None
    clock.now += 1.0
    callbacks.on_batch_end(0, {"batch": 0, "size": 32, "loss": 1.0})
    text = console.file.getvalue()
    assert "compiling kernels…" in text
    assert "32 samples/s" in text and "ETA 3.0s" in text
    callbacks.on_epoch_end(0, {"loss": 1.0})
    callbacks.on_train_end({"loss": 1.0})
    assert display._live is None
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert "Epoch 1/1  1/4 " + "━" * 20 + " 11.0s 1s/step  loss 1.0000" in plain  # 10 s of compiling left out of the rate


def test_finished_epoch_wraps_between_values_at_80_columns():
    console, clock = terminal_console(width=80), FakeClock()
    display = ProgressDisplay(console, "rich", clock=clock)
    logs = {"loss": 0.25, "acc": 0.9, "precision": 0.81, "recall": 0.84, "val_loss": 0.3, "val_acc": 0.85,
            "val_precision": 0.8, "val_recall": 0.79}
    run_fake_training(display, clock, epochs=1, compile_in_first=False, epoch_logs={0: logs})
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    finished = plain[plain.index("Epoch 1/1  4/4"):].splitlines()
    assert finished == [
        "Epoch 1/1  4/4 " + "━" * 20 + " 2.0s 500ms/step",
        "    loss 0.2500  acc 0.9000  precision 0.8100  recall 0.8400  val_loss 0.3000",
        "    val_acc 0.8500  val_precision 0.8000  val_recall 0.7900",
    ]
    assert all(len(line) <= 80 for line in finished)


def test_short_epochs_still_show_their_final_bar_and_step_counter():
    # Every batch lands between two refreshes (the clock stands still): the live bar never
    # moves past 0/4, but the finished line draws the whole bar and counts every step.
    console, clock, display, callbacks = one_epoch_training(10.0)
    callbacks.on_epoch_begin(0, {})
    for batch, size in enumerate(BATCH_SIZES):
        callbacks.on_batch_end(batch, {"batch": batch, "size": size, "loss": 0.5, "acc": 0.5})
    clock.now += 0.004
    callbacks.on_epoch_end(0, {"loss": 0.5, "acc": 0.5})
    callbacks.on_train_end({})
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert "Epoch 1/1  4/4 " + "━" * 20 + " 0.00s 1ms/step  loss 0.5000  acc 0.5000" in plain


def test_summary_line_wraps_between_values_on_a_terminal():
    console = terminal_console(width=80, color_system=None)
    render_summary_line(console, "trained 3 epochs in 4.6s  loss 0.02187  accuracy 0.993  val_loss 0.01823  "
                        "val_accuracy 0.9933  val_precision 0.9123", "runs/q/1")
    assert console.file.getvalue().splitlines() == [
        "trained 3 epochs in 4.6s",
        "    loss 0.02187  accuracy 0.993  val_loss 0.01823  val_accuracy 0.9933",
        "    val_precision 0.9123",
        "run: runs/q/1",
    ]
