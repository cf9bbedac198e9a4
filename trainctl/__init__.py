"""trainctl: train neural networks described in YAML, with numba-compiled kernels.

The public API is small and importable without numba (kernels load on first use):

    from trainctl import Sequential
    model = Sequential([{"type": "dense", "units": 10, "activation": "softmax", "input_shape": [4]}])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5)

    from trainctl import load_config, build_model, train_from_config, open_run
    loaded = load_config("configs/quickstart.yaml", ["fit.epochs=3"])
    outcome = train_from_config(loaded, out="runs/mine")      # the run directory, as the CLI
    run = open_run("runs/mine"); run.model.predict(x)
"""

import os as _os

# OpenBLAS worker threads spin after each matrix product (for 2^28 cycles by default). Between
# products trainctl runs its own kernels on the main thread, and the spinning worker slows it:
# on the 2-core development VM, W1 at batch 512 with 2 BLAS threads ran at 0.84 M samples/s
# spinning and 1.21 M with workers that sleep at once. Only effective if numpy is not yet loaded.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")

__version__ = "0.1.0"

_EXPORTS = {
    "Sequential": "trainctl.nn.model",
    "load_config": "trainctl.config",
    "build_model": "trainctl.runs.build",
    "train_from_config": "trainctl.runs.train",
    "open_run": "trainctl.runs.inference",
    "load": "trainctl.runs.saved",
    "TrainctlError": "trainctl.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def _terminal_display():
    """The display of the Python API (fit(verbose=...), summary()): the CLI's terminal rendering.
    The package root is where library and CLI meet; below it the library never imports the CLI."""
    from trainctl.cli.verbose import TerminalDisplay

    return TerminalDisplay()


from trainctl.train import display as _display  # noqa: E402 (after the environment default above)

_display.register(_terminal_display)


def __getattr__(name: str):
    """Lazy exports, so `import trainctl` (and `trainctl --help`) stays light."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainctl' has no attribute {name!r}")
