"""The package's public API: lazy exports that work end to end, and a light `import trainctl`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import trainctl


def test_import_trainctl_loads_neither_numpy_nor_numba():
    code = "import sys, trainctl; print('numpy' in sys.modules, 'numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]


def test_exports_train_a_config_and_reopen_the_run(tmp_path):
    loaded = trainctl.load_config(trainctl_root() / "configs" / "quickstart.yaml",
                                  ["fit.epochs=2", "data.train.n_samples=6000"])
    outcome = trainctl.train_from_config(loaded, out=tmp_path / "run")
    run = trainctl.open_run(tmp_path / "run")
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    assert run.model.predict(x).shape == (5, 3)
    assert outcome.epochs == 2 and outcome.metrics["val_accuracy"] > 0.4  # chance: 0.33
    assert isinstance(trainctl.build_model(loaded.config), trainctl.Sequential)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        trainctl.not_a_thing  # noqa: B018


def trainctl_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
