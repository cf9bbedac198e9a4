"""Naive baselines a trained model should beat, computed from the data alone.

For forecasting windows (the `time_series` generator: x [n, window, 1], y [n, horizon]; a
time-series CSV computes its own from the raw series, see data/windows.py),
the last-value forecast predicts every future step as the window's last value — the
persistence baseline forecasters are judged against. `train` prints it beside the model's
validation error, so "far below the baseline" can be read off the run.
"""

from __future__ import annotations

import numpy as np


def last_value_mae(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error of predicting y [n, horizon] as x[:, -1, 0] for every step."""
    forecast = x[:, -1, 0].astype(np.float64)[:, None]
    return float(np.mean(np.abs(y.astype(np.float64).reshape(len(y), -1) - forecast)))


def forecast_baseline_line(data_config, data, model_value: float | None) -> str | None:
    """The line `train` prints for a forecasting source: a generator that declares
    `forecasts` (time_series), or a time-series CSV (`window:`), whose loader computed the
    baseline from the raw series in the units y is trained in (None for other data, or
    generator windows that were rescaled)."""
    source = data_config.train
    baseline = getattr(data, "forecast_baseline", None)
    if baseline is None:
        if not getattr(source, "forecasts", False) or data.x_val is None or data_config.preprocessing:
            return None
        baseline = last_value_mae(data.x_val, data.y_val)
    scaled = " (standardized target units)" if data_config.target_preprocessing else ""
    line = f"last-value baseline on the validation split: mae {baseline:.4g}{scaled}"
    if model_value is not None:
        line += f" (the model: val_mae {model_value:.4g}, {model_value / baseline:.2f}x the baseline)"
    return line
