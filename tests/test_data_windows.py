"""Time-series CSVs (issue 11): window / horizon / stride / sampling_rate cut from a series of
rows, checked against a naive loop; windows are views of the series (memory O(series)); the
split is by time with no window across it; errors located in the config or the data file;
train + predict through the CLI with the last-value baseline beside the model's val_mae."""

from __future__ import annotations

import csv
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import error_lines, fails, ok, write
from trainctl.data import DataConfig, load_data
from trainctl.data.readers import CSV_CHUNK_BYTES
from trainctl.data.source import ArraySource
from trainctl.data.windows import Windowing
from trainctl.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def naive_windows(series, targets, window, horizon, stride, rate, with_targets=True):
    """Window by window, as Keras's timeseries_dataset_from_array documents it."""
    xs, ys = [], []
    start = 0
    while True:
        rows = [start + k * rate for k in range(window)]
        after = [rows[-1] + 1 + k for k in range(horizon)] if with_targets else []
        if max(rows + after) >= len(series):
            break
        xs.append(np.stack([series[r] for r in rows]))
        if with_targets:
            ys.append(np.concatenate([targets[r] for r in after]))
        start += stride
    return xs, ys


@pytest.mark.parametrize("window,horizon,stride,rate", [(1, 1, 1, 1), (5, 1, 1, 1), (4, 3, 2, 1), (3, 2, 3, 2), (10, 1, 7, 3)])
def test_windows_match_a_naive_loop(window, horizon, stride, rate):
    rng = np.random.default_rng(window * 100 + stride)
    series = rng.normal(size=(97, 3)).astype(np.float32)
    targets = series[:, [2, 0]]
    spec = Windowing(window, horizon, stride, rate)
    xs, ys = naive_windows(series, targets, window, horizon, stride, rate)
    n = spec.count(len(series))
    assert n == len(xs)
    x = spec.inputs(series, n)
    assert x.shape == (n, window, 3) and np.shares_memory(x, series)
    np.testing.assert_array_equal(x, np.stack(xs))
    np.testing.assert_array_equal(spec.targets(targets, n), np.stack(ys))
    np.testing.assert_array_equal(spec.last_values(targets, n), np.stack(xs)[:, -1][:, [2, 0]])
    # without targets (predict): every window the rows hold, the last one reaching the end
    xs_all, _ = naive_windows(series, targets, window, horizon, stride, rate, with_targets=False)
    assert spec.count(len(series), with_targets=False) == len(xs_all)


def series_csv(path: Path, n: int, extra: str = "") -> Path:
    t = np.arange(n)
    value = np.round(10 * np.sin(t / 5.0) + t * 0.01, 3)
    lines = ["date,t,value" + extra] + [f"2025-01-01T{i % 24:02d},{i},{v}" for i, v in zip(t, value)]
    return write(path, "\n".join(lines) + "\n")


def load(train: dict, base: Path, **extra):
    return load_data(DataConfig.model_validate({"train": train, **extra}), 0, base, loss="mse")


def test_split_by_time_no_window_straddles_and_stats_from_training_rows(tmp_path):
    series_csv(tmp_path / "s.csv", 200)
    d = load({"csv": "s.csv", "target": "t", "window": 6, "horizon": 2, "stride": 3}, tmp_path,
             validation_split=0.25, preprocessing=["standardize"])
    assert d.feature_names == ["t", "value"]  # the date column is left out; the target is a feature too
    stats = d.preprocessing.stats[0]
    np.testing.assert_allclose(stats["mean"][0], np.arange(150).mean(), rtol=1e-6)  # rows 0..149 only
    rows = lambda x: np.rint(x[..., 0] * stats["std"][0] + stats["mean"][0])  # noqa: E731 - back to row numbers
    last_training_row = max(rows(d.x).max(), d.y.max())
    assert last_training_row == 148  # 48 windows: the last starts at row 141, its targets are rows 147-148
    assert rows(d.x_val).min() == 150  # validation windows start after it
    assert d.y_val.min() >= 150 + 6 and d.y_val.max() == 199
    assert d.x.shape == ((150 - 6 - 2) // 3 + 1, 6, 2) and d.y.shape[1:] == (2,)
    # the persistence baseline: each window's last t against the next two t values
    assert d.forecast_baseline == pytest.approx(1.5)


def test_windows_stay_views_memory_is_o_series(tmp_path):
    n, window = 100_000, 200
    t = np.arange(n)
    (tmp_path / "long.csv").write_text("a,b\n" + "\n".join(f"{i % 97},{i % 13}" for i in t) + "\n")
    small = Windowing(window).inputs(np.zeros((window + 10, 2), np.float32), 10)  # compile (or load) the gather
    list(ArraySource(small, np.zeros((10, 1), np.float32), shuffle=True).batches(0, 4))  # kernel outside the count
    tracemalloc.start()
    d = load({"csv": "long.csv", "target": "a", "window": window}, tmp_path, preprocessing=["standardize"])
    source = ArraySource(d.x, d.y, shuffle=True, seed=0)
    batches = sum(1 for _ in source.batches(0, 256))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    series_bytes = n * 2 * 4
    windows_bytes = d.x.shape[0] * window * 2 * 4  # 160 MB if the windows were copied
    assert batches == -(-d.x.shape[0] // 256)
    assert not d.x.flags.owndata and d.x.base is not None and np.shares_memory(d.x, d.x.base)
    # a few copies of the series (read, standardized, the shuffle order) and the reader's block buffer
    assert peak < CSV_CHUNK_BYTES + 12 * series_bytes < windows_bytes / 8, (peak, series_bytes)


def test_sampling_rate_windows_are_gathered_per_batch(tmp_path):
    series_csv(tmp_path / "s.csv", 120)
    d = load({"csv": "s.csv", "target": "t", "sequence_length": 4, "sampling_rate": 3}, tmp_path)
    assert d.x.shape[1:] == (4, 2) and not d.x.flags.owndata
    source = ArraySource(d.x, d.y, shuffle=True, seed=1)
    assert source._x2d is None  # no 2-D view exists: batches gather rows from the view
    order = source.order(0)
    got = np.concatenate([x.copy() for x, _, _ in source.batches(0, 16)])
    np.testing.assert_array_equal(got, np.asarray(d.x)[order])
    np.testing.assert_array_equal(got[:, :, 0], got[:, :1, 0] + np.arange(4) * 3)  # rows r, r+3, r+6, r+9
    ys = np.concatenate([y.copy() for _, y, _ in source.batches(0, 16)])
    np.testing.assert_array_equal(ys[:, 0], got[:, -1, 0] + 1)


def test_bad_cells_name_the_file_and_row(tmp_path):
    lines = ["a,b"] + [f"{i},{i}" for i in range(30)]
    lines[12] = "11,oops"
    write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv:13: row 12, column 'b': 'oops' is not a number"):
        load({"csv": "bad.csv", "target": "a", "window": 4}, tmp_path)


CONFIG = """\
name: ts
model:
  layers:
    - {type: lstm, units: 4, input_shape: [8, 2]}
    - {type: dense, units: 1}
optimizer: adam
loss: mse
metrics: [mae]
data:
  train: {csv: s.csv, target: value, window: 8, horizon: 1, stride: 1}
  validation_split: 0.2
  preprocessing: [standardize]
fit: {epochs: 1, batch_size: 32}
"""


def test_located_config_errors(tmp_path):
    series_csv(tmp_path / "s.csv", 60)
    cases = [
        ("window: 8,", "window: 80,", r":10:\d+: data.train.window: window 80 and horizon 1 need 81 rows, but s\.csv has 60"),
        ("window: 8,", "window: 50,", r":11:\d+: data.validation_split: window 50 and horizon 1 need 51 rows, but the "
                                      r"training split of s\.csv \(its first 48 rows\) has 48"),
        ("stride: 1", "stride: 0", r":10:\d+: data.train.stride: must be > 0, got 0"),
        ("horizon: 1,", "horizon: -2,", r":10:\d+: data.train.horizon: must be > 0, got -2"),
        ("target: value", "target: valeu", r":10:\d+: data.train.target: s\.csv: unknown column 'valeu'; did you mean 'value'\?"),
        ("validation_split: 0.2", "validation_split: 0.1", r":11:\d+: data.validation_split: window 8 and horizon 1 need 9 rows"),
        ("[standardize]", "[flatten]", r":12:\d+: data.preprocessing.0: preprocessing flatten does not apply to time-series"),
    ]
    for old, new, expected in cases:
        config = write(tmp_path / "c.yaml", CONFIG.replace(old, new))
        lines = error_lines(fails(["train", config, "--out", tmp_path / "never"]))
        assert any(re.search(re.escape(str(config)) + expected, line) for line in lines), (new, lines)
    config = write(tmp_path / "c.yaml", CONFIG.replace("horizon: 1, stride: 1", "stride: 1").replace(
        "window: 8,", "").replace("target: value", "target: value, horizon: 2"))
    [line] = error_lines(fails(["validate", config]))
    assert re.search(r"c\.yaml:10:\d+: data.train: .*horizon applies to a time series: set window", line), line


def test_train_predict_evaluate_through_the_cli(tmp_path):
    series_csv(tmp_path / "s.csv", 160)
    config = write(tmp_path / "c.yaml", CONFIG)
    result = ok(["train", config, "--out", tmp_path / "run"])
    out = result.stdout + result.stderr
    match = re.search(r"last-value baseline on the validation split: mae ([0-9.]+) \(the model: val_mae ([0-9.]+)", out)
    assert match, out
    # the baseline line's number is the persistence forecast's MAE on the last 32 rows' windows
    value = np.round(10 * np.sin(np.arange(160) / 5.0) + np.arange(160) * 0.01, 3)
    tail = value[128:]
    assert float(match.group(1)) == pytest.approx(np.abs(tail[8:] - tail[7:-1]).mean(), rel=1e-3)
    ok(["predict", tmp_path / "run", "--input", tmp_path / "s.csv", "--output", tmp_path / "p.csv"])
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) - 1 == 160 - 8 + 1  # a forecast after every window, the last one past the file's end
    series_csv(tmp_path / "short.csv", 5)
    [line] = error_lines(fails(["predict", tmp_path / "run", "--input", tmp_path / "short.csv"]))
    assert line.endswith("short.csv: window 8 needs 8 rows, but the file has 5"), line
    evaluated = ok(["evaluate", tmp_path / "run", "--data", tmp_path / "s.csv"]).stdout
    assert re.search(r"value\W+[0-9.]+\W+[0-9.]+\W+-?[0-9.]+\W+152\b", evaluated), evaluated


@pytest.mark.slow
def test_shipped_csv_forecaster_beats_the_last_value_baseline(tmp_path):
    result = ok(["train", ROOT / "configs" / "electricity_load.yaml", "--out", tmp_path / "run"])
    out = result.stdout + result.stderr
    match = re.search(r"mae ([0-9.]+) \(standardized target units\) \(the model: val_mae ([0-9.]+)", out)
    assert match, out
    assert float(match.group(2)) < 0.8 * float(match.group(1))


def test_sample_weight_of_a_window_is_its_first_target_row(tmp_path):
    write(tmp_path / "w.csv", "v,w\n" + "\n".join(f"{i},{i % 3}" for i in range(20)) + "\n")
    d = load({"csv": "w.csv", "target": "v", "features": ["v"], "sample_weight": "w", "window": 4, "stride": 2}, tmp_path)
    starts = np.arange(len(d.x)) * 2
    np.testing.assert_array_equal(d.sample_weight, (starts + 4) % 3)
    np.testing.assert_array_equal(d.y[:, 0], starts + 4)
