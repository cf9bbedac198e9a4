"""trainctl: train neural networks described in YAML, with numba-compiled kernels.

The public API is small and importable without numba (kernels load on first use):

    from trainctl import load_config, build_model
    model = build_model(config)
    model.fit(x, y, epochs=5)
"""

__version__ = "0.1.0"
