"""Preprocessing: statistics from the training split only, saved and applied again."""

from pathlib import Path

import numpy as np
import pytest

from trainctl.data import DataConfig, PreprocessingState, apply_preprocessing, fit_preprocessing, load_data
from trainctl.data.config import MinMax, Standardize
from trainctl.data import preprocessing
from trainctl.errors import DataError


def test_standardize_uses_training_split_only():
    cfg = DataConfig.model_validate({"train": {"generator": "linear", "n_samples": 201, "noise": 0},
                                     "validation_split": 0.25, "preprocessing": ["standardize"]})
    d = load_data(cfg, 0, Path("."))
    raw = np.linspace(-2, 2, 201)
    train_raw = raw[: len(d.x)]
    mean, std = d.preprocessing.stats[0]["mean"], d.preprocessing.stats[0]["std"]
    np.testing.assert_allclose(mean, [train_raw.mean()], rtol=1e-5)
    np.testing.assert_allclose(std, [train_raw.std()], rtol=1e-5)
    np.testing.assert_allclose(d.x.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(d.x_val[:, 0], (raw[len(d.x):] - train_raw.mean()) / train_raw.std(), rtol=1e-5)
    assert d.x_val.mean() > 1  # validation is not re-centred on its own statistics


def test_blockwise_moments_match_numpy(monkeypatch):
    monkeypatch.setattr(preprocessing, "BLOCK_ROWS", 7)
    x = np.random.default_rng(0).normal(3, 2, (100, 4, 2)).astype(np.float32)
    state = fit_preprocessing([Standardize(type="standardize"), MinMax(type="min_max", feature_range=(-1, 1))], x)
    np.testing.assert_allclose(state.stats[0]["mean"], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(state.stats[0]["std"], x.std(0), rtol=1e-4)
    out = apply_preprocessing(state, x)
    np.testing.assert_allclose(out.min(0), -1, atol=1e-6)
    np.testing.assert_allclose(out.max(0), 1, atol=1e-6)


def test_state_round_trips_through_arrays():
    cfg = DataConfig.model_validate({"train": {"generator": "blobs", "n_samples": 300},
                                     "preprocessing": ["min_max", {"type": "one_hot"}, {"type": "reshape", "target_shape": [2, 1]}]})
    d = load_data(cfg, 0, Path("."))
    arrays = d.preprocessing.to_arrays()
    assert set(arrays) == {"preprocessing.0.min_max/min", "preprocessing.0.min_max/max", "preprocessing.1.one_hot/num_classes"}
    again = PreprocessingState.from_arrays(cfg.preprocessing, arrays)
    x = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_array_equal(apply_preprocessing(again, x), apply_preprocessing(d.preprocessing, x))
    assert d.x.shape == (300, 2, 1) and d.y.shape == (300, 3)
    with pytest.raises(DataError, match="missing min_max statistic 'max'"):
        PreprocessingState.from_arrays(cfg.preprocessing, {"preprocessing.0.min_max/min": arrays["preprocessing.0.min_max/min"]})


def test_flatten_rescale_and_bad_reshape():
    cfg = DataConfig.model_validate({"train": {"generator": "random_normal", "n_samples": 4, "shape": [2, 3]},
                                     "preprocessing": [{"type": "rescale", "scale": 2, "offset": 1}, "flatten"]})
    d = load_data(cfg, 0, Path("."))
    raw = load_data(DataConfig.model_validate({"train": {"generator": "random_normal", "n_samples": 4, "shape": [2, 3]}}), 0, Path("."))
    np.testing.assert_allclose(d.x, raw.x.reshape(4, 6) * 2 + 1, rtol=1e-6)
    bad = DataConfig.model_validate({"train": {"generator": "random_normal", "n_samples": 4, "shape": [6]},
                                     "preprocessing": [{"type": "reshape", "target_shape": [4, 2]}]})
    with pytest.raises(DataError, match=r"reshape to \[4, 2\] needs 8 values per sample"):
        load_data(bad, 0, Path("."))
