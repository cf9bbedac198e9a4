"""The Layer base contract: add_weight, non-trainable weights, declared hooks with defaults."""

import numpy as np
import pytest

from trainctl import Sequential
from trainctl.errors import TrainctlError
from trainctl.nn.layers import Layer, LayerParams


class _ScaleWithRunningMean(Layer):
    """y = gain * x; keeps a running mean of x as a non-trainable weight (like batch norm)."""

    type_id = "scale_with_running_mean"
    class_name = "ScaleWithRunningMean"

    def build(self, input_shape, context):
        super().build(input_shape, context)
        self.gain = self.add_weight("gain", input_shape[-1:], "ones", context)
        self.running = self.add_weight("running_mean", input_shape[-1:], "zeros", context, trainable=False)
        return self.output_shape

    def forward(self, x, training):
        if training:
            self.running.value[...] = 0.5 * self.running.value + 0.5 * x.mean(axis=0)
        self._x = x
        return x * self.gain.value

    def backward(self, dy, need_dx=True):
        self.gain.grad[...] = (dy * self._x).sum(axis=0)
        return dy * self.gain.value if need_dx else None


def _model():
    layer = _ScaleWithRunningMean(LayerParams(input_shape=[3]))
    return Sequential([layer, {"type": "dense", "units": 2}], seed=1)


def test_add_weight_names_and_non_trainable_totals():
    model = _model()
    names = [w.name for w in model.weights]
    assert names == ["scale_with_running_mean_ScaleWithRunningMean1/gain",
                     "scale_with_running_mean_ScaleWithRunningMean1/running_mean",
                     "dense_Dense1/kernel", "dense_Dense1/bias"]
    totals = model.param_totals()
    assert (totals.total, totals.trainable, totals.non_trainable) == (3 + 3 + 8, 3 + 8, 3)
    assert model.flat_values.size == 11  # the moving statistic is not in the optimizer's buffer
    assert model.summary_rows()[0].n_params == 6


def test_non_trainable_weight_is_updated_by_forward_not_by_the_optimizer(tmp_path):
    model = _model()
    model.compile("sgd", "mean_squared_error")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.zeros((4, 2), np.float32)
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False)
    running = model.get_weights()["scale_with_running_mean_ScaleWithRunningMean1/running_mean"]
    np.testing.assert_allclose(running, 0.5 * x.mean(axis=0), rtol=1e-6)  # forward's update, untouched by SGD
    # restored through set_weights with every other weight
    saved = {k: v.copy() for k, v in model.get_weights().items()}
    fresh = _model()
    fresh.set_weights(saved)
    np.testing.assert_array_equal(fresh.get_weights()["scale_with_running_mean_ScaleWithRunningMean1/running_mean"], running)


def test_declared_defaults():
    layer = _model().layers[0]
    assert layer.output_activation is None
    assert layer.get_state() == {} and layer.activity_loss(4) == 0.0 and not layer.has_activity_regularizer
    layer.reset_states()
    with pytest.raises(TrainctlError, match="no output activation"):
        layer.backward_from_preactivation(np.zeros((1, 3), np.float32))


def test_a_layer_that_makes_or_ends_masks_tells_its_rule_from_shapes_too():
    # compute_mask (the arrays, in forward) and output_mask_spec (the shapes, at build: the
    # model's check of what reaches a mask reader, the compiled loop's mask links) state one
    # rule; a layer overriding one and not the other would make them disagree
    import importlib

    from trainctl.nn.layers import LAYERS, TYPES_BY_MODULE

    for module in TYPES_BY_MODULE:
        importlib.import_module(f"trainctl.nn.layers.{module}")
    classes = {LAYERS.get(name) for names in TYPES_BY_MODULE.values() for name in names}
    overrides = {cls.__name__: (cls.compute_mask is not Layer.compute_mask,
                                cls.output_mask_spec is not Layer.output_mask_spec) for cls in classes}
    assert {name for name, (arrays, shapes) in overrides.items() if arrays != shapes} == set()
    assert {name for name, (arrays, _) in overrides.items() if arrays} == {"Bidirectional", "Embedding", "Masking"}


def test_the_layer_modules_register_what_the_on_demand_table_says():
    # LAYERS imports a layer module when one of its ids is first looked up (TYPES_BY_MODULE):
    # an id missing from the table, or listed under a module that does not register it, would
    # be unknown to a config until something else imported the right module
    import subprocess
    import sys

    probe = """
import importlib, pkgutil
import trainctl.nn.layers as package
from trainctl.nn.layers import LAYERS, TYPES_BY_MODULE
def held():
    return set(LAYERS._entries) | set(LAYERS._aliases)
for module, names in TYPES_BY_MODULE.items():
    importlib.import_module(f"trainctl.nn.layers.{module}")
    missing = set(names) - held()
    assert not missing, (module, missing)
listed = {name for names in TYPES_BY_MODULE.values() for name in names}
for info in pkgutil.iter_modules(package.__path__):
    importlib.import_module(f"trainctl.nn.layers.{info.name}")
assert held() == listed, (held() - listed, listed - held())
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_layer_id_loads_its_module_in_a_fresh_process():
    # a config naming one layer type imports that type's module, and only the modules it needs
    import subprocess
    import sys

    probe = ("import sys\nfrom trainctl.nn.layers import LAYERS\n"
             "print(LAYERS.get('conv2d').__name__, LAYERS.resolve('upsampling2d'), LAYERS.resolve('LeakyReLU'))\n"
             "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('trainctl.nn.layers.')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, loaded = done.stdout.splitlines()
    assert first == "Conv2D up_sampling2d leaky_re_lu"
    assert "recurrent" not in loaded and "wrappers" not in loaded and "normalization" not in loaded
    assert {"conv", "reshaping", "advanced_activations"} <= set(eval(loaded))
