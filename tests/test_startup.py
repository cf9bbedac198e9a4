"""Start-up cost: what a training process loads, checked in fresh interpreters (bench/startup_time.py
measures the times)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainctl.jit import fpu


def _python(code: str, cache: Path | None = None) -> list[str]:
    env = dict(os.environ)
    if cache is not None:
        env["TRAINCTL_CACHE_DIR"] = str(cache)
        env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_cython_blas_loads_without_scipy_linalg_and_a_later_import_is_whole():
    out = _python(
        "import sys\n"
        "from trainctl.jit.cython_blas import preload_cython_blas\n"
        "preload_cython_blas()\n"
        "blas = sys.modules['scipy.linalg.cython_blas']\n"
        "print('scipy.linalg' in sys.modules, 'dgemm' in blas.__pyx_capi__)\n"
        "import numpy as np, scipy.linalg, scipy.linalg.cython_blas\n"
        "from scipy.linalg import cython_blas\n"
        "print(scipy.linalg.cython_blas is blas, cython_blas is blas, float(scipy.linalg.det(2 * np.eye(2))))\n")
    assert out == ["False", "True", "True", "True", "4.0"]


def test_a_fixed_loss_code_compiles_its_formula_only(tmp_path):
    # numba prunes the other branches of kernels/losses.py's if-chain before typing them, so
    # no other formula is compiled (in a fresh cache, where nothing else compiled them either)
    out = _python(
        "import numpy as np\n"
        "from trainctl.kernels import loss_formulas as f, losses\n"
        "from trainctl.kernels.codes import MEAN_SQUARED_ERROR as MSE\n"
        "t = np.zeros((4, 2), np.float32); p = np.ones((4, 2), np.float32)\n"
        "scale = np.full(4, 0.25, np.float32); per_row = np.empty(4, np.float32); grad = np.empty_like(p)\n"
        "total = losses.loss_rows_for(MSE)(MSE, t, p, scale, per_row, grad, losses.GRAD_WRT_PRED, np.float64, False)\n"
        "others = [k for k in (f._crossentropy, f._binary_crossentropy, f._logcosh, f._cosine_proximity) if k.signatures]\n"
        "print(total, per_row.tolist() == [1.0] * 4, float(grad[0, 0]), len(f._mean_squared_error.signatures), len(others))\n",
        tmp_path / "cache")
    assert out == ["4.0", "True", "0.25", "1", "0"]


@pytest.mark.skipif(not fpu.SUPPORTED or sys.platform not in ("linux", "darwin"),
                    reason="fegetenv's MXCSR on x86-64 Linux and macOS")
def test_mxcsr_needs_no_numba():
    out = _python(
        "import sys\n"
        "from trainctl.jit import fpu\n"
        "before = fpu.flush_denormals(True)\n"
        "inside = fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ) == fpu.FTZ | fpu.DAZ\n"
        "fpu.set_mxcsr(before)\n"
        "print(inside, fpu.get_mxcsr() & fpu.CONTROL == before & fpu.CONTROL, 'numba' in sys.modules)\n")
    assert out == ["True", "True", "False"]


def test_a_metric_compiles_its_own_kernel_only(tmp_path):
    # the Python loop's metrics (metric_value_for) prune the other metrics' branches, and a
    # loss-like metric compiles its own loss formula only (in a fresh cache)
    out = _python(
        "import numpy as np\n"
        "from trainctl.kernels import loss_formulas as f, metrics as m\n"
        "from trainctl.kernels.codes import CATEGORICAL_ACCURACY as CA, LOSS_METRIC_OFFSET, MEAN_ABSOLUTE_ERROR\n"
        "t = np.array([[1, 0], [0, 1], [0, 1]], np.float32); p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], np.float32)\n"
        "mae = LOSS_METRIC_OFFSET + MEAN_ABSOLUTE_ERROR\n"
        "expected = float(np.mean(np.abs(t - p).mean(axis=1, dtype=np.float64)))\n"
        "print(m.metric_value_for(CA)(CA, t, p), abs(m.metric_value_for(mae)(mae, t, p) - expected) < 1e-7)\n"
        "others = [k for k in (m._binary_accuracy, m._r2_score, f._crossentropy, f._mean_squared_error) if k.signatures]\n"
        "print(len(m._categorical_accuracy.signatures), len(f._mean_absolute_error.signatures), len(others))\n",
        tmp_path / "cache")
    assert out == [str(2 / 3), "True", "1", "1", "0"]


def test_a_dense_fit_imports_no_other_layer_module():
    # LAYERS imports a layer module when a config names one of its types; the fit's checks of
    # the compiled loop (train/compiled.py unsupported) must not import the others either: the
    # mask check did (wrappers, embedding, recurrent), and a warm linear regression lost the
    # ~35 ms the on-demand table saved
    code = """
import sys
import numpy as np
from trainctl.nn.model import Sequential
m = Sequential([{"type": "dense", "units": 4, "activation": "relu", "input_shape": [3]},
                {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 1}], seed=0)
m.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
m.fit(x, x[:, :1], epochs=2, batch_size=16, verbose=0)
print(*sorted(name.rsplit(".", 1)[1] for name in sys.modules if name.startswith("trainctl.nn.layers.")))
"""
    assert _python(code) == ["base", "core", "plans"]
