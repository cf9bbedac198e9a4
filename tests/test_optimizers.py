"""Optimizers against numpy transcriptions of the TF.js updates (tests/reference/optimizers.py),
TF.js string-id defaults, clipping, exact resume, and single steps cross-checked in torch."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainctl.errors import TrainctlError
from trainctl.nn.optimizers import OPTIMIZERS, Optimizer, build_optimizer, resolve_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import optimizers as ref  # noqa: E402


@dataclass
class W:
    """Stands in for trainctl.nn.layers.base.Weight (same fields the optimizer reads)."""

    name: str
    value: np.ndarray
    grad: np.ndarray
    trainable: bool = True
    regularizer: Any = None


TOLERANCE = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}

# (spec, reference function, reference keyword arguments = every parameter spelled out)
CASES = [
    ("sgd", "sgd", dict(learning_rate=0.01)),
    ({"type": "sgd", "learning_rate": 0.3}, "sgd", dict(learning_rate=0.3)),
    ({"type": "momentum", "momentum": 0.9}, "momentum", dict(learning_rate=0.01, momentum=0.9)),
    ({"type": "momentum", "learning_rate": 0.05, "momentum": 0.8, "use_nesterov": True}, "momentum",
     dict(learning_rate=0.05, momentum=0.8, use_nesterov=True)),
    ("adam", "adam", dict(learning_rate=0.001)),
    ({"type": "adam", "learning_rate": 0.02, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-4}, "adam",
     dict(learning_rate=0.02, beta1=0.8, beta2=0.95, epsilon=1e-4)),
    ("adamax", "adamax", dict(learning_rate=0.002)),
    ({"type": "adamax", "learning_rate": 0.01, "decay": 0.1, "beta2": 0.9}, "adamax",
     dict(learning_rate=0.01, decay=0.1, beta2=0.9)),
    ("adagrad", "adagrad", dict(learning_rate=0.01)),
    ({"type": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.5}, "adagrad",
     dict(learning_rate=0.1, initial_accumulator_value=0.5)),
    ("adadelta", "adadelta", dict(learning_rate=1.0)),
    ({"type": "adadelta", "learning_rate": 0.5, "rho": 0.8, "epsilon": 1e-6}, "adadelta",
     dict(learning_rate=0.5, rho=0.8, epsilon=1e-6)),
    ("rmsprop", "rmsprop", dict(learning_rate=0.001)),
    ({"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.9, "decay": 0.8}, "rmsprop",
     dict(learning_rate=0.01, momentum=0.9, decay=0.8)),
    ({"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True}, "rmsprop",
     dict(learning_rate=0.01, momentum=0.5, centered=True)),
]
IDS = [f"{name}-{i}" for i, (_, name, _) in enumerate(CASES)]

# Slots the reference keeps per weight, by the name the optimizer's state() uses.
REFERENCE_SCALARS = {"acc_beta1", "acc_beta2", "iteration"}


def make_weights(rng: np.random.Generator, dtype) -> list[W]:
    shapes = {"dense_Dense1/kernel": (5, 3), "dense_Dense1/bias": (3,), "conv2d_Conv2D1/kernel": (2, 2, 3, 4)}
    return [W(name, rng.standard_normal(shape).astype(dtype), np.zeros(shape, dtype)) for name, shape in shapes.items()]


def built_adam() -> tuple[list[W], object]:
    """make_weights (float32, seed 0) and a default adam built on them."""
    weights = make_weights(np.random.default_rng(0), np.float32)
    adam = build_optimizer("adam")
    adam.build(weights)
    return weights, adam


def fill_grads(weights: list[W], rng: np.random.Generator) -> None:
    for w in weights:
        w.grad[...] = rng.standard_normal(w.grad.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec, name, kwargs", CASES, ids=IDS)
def test_matches_tfjs_reference(spec, name, kwargs, dtype):
    rng = np.random.default_rng(42)
    weights = make_weights(rng, dtype)
    expected = {w.name: w.value.copy() for w in weights}
    reference_state: dict[str, dict] = {w.name: {} for w in weights}
    optimizer = build_optimizer(spec)
    optimizer.build(weights)
    for step in range(6):
        fill_grads(weights, rng)
        for w in weights:
            expected[w.name] = ref.UPDATES[name](expected[w.name], w.grad.copy(), reference_state[w.name], **kwargs)
        optimizer.apply(weights)
        assert optimizer.iterations == step + 1
        for w in weights:
            assert w.value.dtype == dtype
            np.testing.assert_allclose(w.value, expected[w.name], **TOLERANCE[dtype], err_msg=f"step {step} {w.name}")
    state = optimizer.state()
    for w in weights:
        for slot, array in reference_state[w.name].items():
            if slot in REFERENCE_SCALARS:
                continue
            np.testing.assert_allclose(state[f"{w.name}/{slot}"], array, **TOLERANCE[dtype])
    for scalar in ("acc_beta1", "acc_beta2"):
        if scalar in reference_state[weights[0].name]:
            np.testing.assert_allclose(state[scalar][0], reference_state[weights[0].name][scalar], rtol=1e-7)
    assert all(np.isfinite(w.value).all() for w in weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec, name, kwargs", CASES, ids=IDS)
def test_flat_buffer_path_matches_per_weight_path_and_reference(spec, name, kwargs, dtype):
    # Production (compile) runs build_flat: every trainable weight a view of one buffer and
    # one kernel call per step. It must give the per-weight path's numbers exactly.
    rng = np.random.default_rng(7)
    per_weight = make_weights(rng, dtype)
    sizes = [w.value.size for w in per_weight]
    flat_value = np.concatenate([w.value.reshape(-1) for w in per_weight])
    flat_grad = np.zeros_like(flat_value)
    offsets = np.cumsum([0, *sizes])
    flat = [W(w.name, flat_value[a:b].reshape(w.value.shape), flat_grad[a:b].reshape(w.value.shape))
            for w, a, b in zip(per_weight, offsets[:-1], offsets[1:])]
    expected = {w.name: w.value.copy() for w in per_weight}
    reference_state: dict[str, dict] = {w.name: {} for w in per_weight}
    separate, together = build_optimizer(spec), build_optimizer(spec)
    separate.build(per_weight)
    together.build_flat(flat, flat_value, flat_grad)
    for step in range(5):
        fill_grads(per_weight, rng)
        for w, f in zip(per_weight, flat):
            f.grad[...] = w.grad
            expected[w.name] = ref.UPDATES[name](expected[w.name], w.grad.copy(), reference_state[w.name], **kwargs)
        separate.apply(per_weight)
        together.apply(flat)
        for w, f in zip(per_weight, flat):
            np.testing.assert_array_equal(f.value, w.value, err_msg=f"step {step} {w.name}")
            np.testing.assert_allclose(f.value, expected[w.name], **TOLERANCE[dtype], err_msg=f"step {step} {w.name}")
    assert np.shares_memory(flat[0].value, flat_value)  # updated in place, still views
    first, second = separate.state(), together.state()
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.mark.parametrize("spec, name, kwargs", CASES, ids=IDS)
def test_learning_rate_changed_between_steps(spec, name, kwargs):
    rng = np.random.default_rng(7)
    weights = make_weights(rng, np.float64)[:1]
    expected = weights[0].value.copy()
    reference_state: dict = {}
    optimizer = build_optimizer(spec)
    for lr in (0.1, 0.02, 0.5):
        optimizer.learning_rate = lr
        fill_grads(weights, rng)
        expected = ref.UPDATES[name](expected, weights[0].grad.copy(), reference_state, **{**kwargs, "learning_rate": lr})
        optimizer.apply(weights)
    np.testing.assert_allclose(weights[0].value, expected, **TOLERANCE[np.float64])


def test_string_id_defaults_follow_tfjs_get_optimizer():
    # tfjs-layers/src/optimizers.ts getOptimizer
    expected = {
        "sgd": dict(learning_rate=0.01),
        "adagrad": dict(learning_rate=0.01, initial_accumulator_value=0.1),
        "adadelta": dict(learning_rate=1.0, rho=0.95, epsilon=1e-7),
        "adam": dict(learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7),
        "adamax": dict(learning_rate=0.002, beta1=0.9, beta2=0.999, epsilon=1e-7, decay=0.0),
        "rmsprop": dict(learning_rate=0.001, decay=0.9, momentum=0.0, epsilon=1e-7, centered=False),
    }
    for type_id, params in expected.items():
        config = build_optimizer(type_id).get_config()
        assert config == {"type": type_id, **params}
        assert build_optimizer({"type": type_id}).get_config() == config
    for spelling, type_id in [("SGD", "sgd"), ("Adam", "adam"), ("RMSProp", "rmsprop"), ("rms_prop", "rmsprop"),
                              ("Adagrad", "adagrad"), ("Adadelta", "adadelta"), ("Adamax", "adamax")]:
        assert build_optimizer(spelling).type_id == type_id
    assert set(OPTIMIZERS.names()) == {"sgd", "momentum", "adam", "adamax", "adagrad", "adadelta", "rmsprop"}


def test_explicit_params_camel_case_and_defaults_for_the_rest():
    opt = build_optimizer({"type": "momentum", "learningRate": 0.1, "momentum": 0.9, "useNesterov": True})
    assert (opt.learning_rate, opt.params.momentum, opt.params.use_nesterov) == (0.1, 0.9, True)
    opt = build_optimizer({"type": "adagrad", "initialAccumulatorValue": 0.3})
    assert (opt.learning_rate, opt.params.initial_accumulator_value) == (0.01, 0.3)
    opt = build_optimizer({"type": "adam", "beta1": 0.5})
    assert opt.get_config() == {"type": "adam", "learning_rate": 0.001, "beta1": 0.5, "beta2": 0.999, "epsilon": 1e-7}
    assert build_optimizer({"type": "momentum", "momentum": 0.5}).learning_rate == 0.01
    assert resolve_optimizer({"type": "rmsprop", "centered": True}) == {
        "type": "rmsprop", "learning_rate": 0.001, "clipnorm": None, "clipvalue": None,
        "decay": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": True}
    config = build_optimizer({"type": "adam", "clipnorm": 1.5}).get_config()
    assert build_optimizer(config).get_config() == config and config["clipnorm"] == 1.5
    same = build_optimizer("sgd")
    assert build_optimizer(same) is same


@pytest.mark.parametrize("spec, fragment", [
    ("adamm", "did you mean 'adam'"),
    ({"type": "adam", "beta_1": 0.9}, "unknown key 'beta_1'; did you mean 'beta1'"),
    ({"type": "sgd", "momentum": 0.9}, "unknown key 'momentum'"),
    ("momentum", "{type: momentum, momentum: 0.9}"),
    ({"type": "momentum"}, "momentum: required"),
    ({"type": "adam", "beta1": 1.0}, "beta1"),
    ({"type": "adam", "learning_rate": -0.1}, "learning_rate"),
    ({"type": "adam", "learning_rate": float("nan")}, "learning_rate"),
    ({"type": "sgd", "clipnorm": 1.0, "clipvalue": 0.5}, "clipnorm or clipvalue"),
    ({"learning_rate": 0.1}, "needs a 'type' key"),
    (3, "must be an id or a mapping"),
])
def test_bad_specs_raise_one_clear_error(spec, fragment):
    with pytest.raises(TrainctlError) as caught:
        build_optimizer(spec)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, clip", [("sgd", dict(clipnorm=0.5)), ("adam", dict(clipnorm=0.5)),
                                        ("sgd", dict(clipvalue=0.3)), ("rmsprop", dict(clipvalue=0.3))])
def test_clipping_matches_keras_semantics(name, clip, dtype):
    rng = np.random.default_rng(3)
    weights = make_weights(rng, dtype)
    optimizer = build_optimizer({"type": name, "learning_rate": 0.1, **clip})
    expected = {w.name: w.value.copy() for w in weights}
    reference_state: dict[str, dict] = {w.name: {} for w in weights}
    for _ in range(3):
        fill_grads(weights, rng)
        grads_before = [w.grad.copy() for w in weights]
        for w in weights:
            clipped = ref.clip_gradient(w.grad, **clip).astype(dtype)
            expected[w.name] = ref.UPDATES[name](expected[w.name], clipped, reference_state[w.name], learning_rate=0.1)
        optimizer.apply(weights)
        for w, before in zip(weights, grads_before):
            np.testing.assert_array_equal(w.grad, before)  # the caller's gradient is untouched
    tolerance = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else TOLERANCE[dtype]
    for w in weights:
        np.testing.assert_allclose(w.value, expected[w.name], **tolerance)


def test_clipnorm_below_threshold_changes_nothing():
    rng = np.random.default_rng(5)
    plain = make_weights(rng, np.float32)
    clipped = [W(w.name, w.value.copy(), w.grad.copy()) for w in plain]
    a = build_optimizer({"type": "adam", "learning_rate": 0.1})
    b = build_optimizer({"type": "adam", "learning_rate": 0.1, "clipnorm": 1e6})
    for _ in range(3):
        fill_grads(plain, rng)
        for p, c in zip(plain, clipped):
            c.grad[...] = p.grad
        a.apply(plain)
        b.apply(clipped)
    for p, c in zip(plain, clipped):
        np.testing.assert_array_equal(p.value, c.value)


def test_clipnorm_rescales_to_the_norm():
    w = W("w", np.zeros(4, np.float64), np.array([3.0, 4.0, 0.0, 0.0]))  # norm 5
    build_optimizer({"type": "sgd", "learning_rate": 1.0, "clipnorm": 1.0}).apply([w])
    np.testing.assert_allclose(w.value, [-0.6, -0.8, 0.0, 0.0], rtol=1e-15)
    w = W("w", np.zeros(3, np.float64), np.array([2.0, -0.1, -7.0]))
    build_optimizer({"type": "sgd", "learning_rate": 1.0, "clipvalue": 0.5}).apply([w])
    np.testing.assert_array_equal(w.value, [-0.5, 0.1, 0.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec, name, kwargs", CASES, ids=IDS)
def test_state_round_trip_resumes_bit_identically(spec, name, kwargs, dtype):
    rng = np.random.default_rng(11)
    weights = make_weights(rng, dtype)
    grads = [[rng.standard_normal(w.grad.shape).astype(dtype) for w in weights] for _ in range(7)]

    def run(optimizer, steps):
        for step_grads in steps:
            for w, g in zip(weights, step_grads):
                w.grad[...] = g
            optimizer.apply(weights)

    first = build_optimizer(spec)
    first.build(weights)
    run(first, grads[:3])
    saved_state = first.state()
    saved_values = [w.value.copy() for w in weights]
    run(first, grads[3:])
    finished = [w.value.copy() for w in weights]

    for w, value in zip(weights, saved_values):
        w.value[...] = value
    resumed = build_optimizer(spec)
    resumed.build(weights)
    resumed.load_state(saved_state)
    assert resumed.iterations == 3
    run(resumed, grads[3:])
    for w, value in zip(weights, finished):
        np.testing.assert_array_equal(w.value, value)
    final_first, final_resumed = first.state(), resumed.state()
    assert final_first.keys() == final_resumed.keys()
    for key in final_first:
        np.testing.assert_array_equal(final_first[key], final_resumed[key], err_msg=key)

    # loading before build works too: slots come from the state
    for w, value in zip(weights, saved_values):
        w.value[...] = value
    unbuilt = build_optimizer(spec)
    unbuilt.load_state(saved_state)
    run(unbuilt, grads[3:])
    for w, value in zip(weights, finished):
        np.testing.assert_array_equal(w.value, value)


def test_state_names_shapes_and_copies():
    weights, adam = built_adam()
    state = adam.state()
    expected = {"iterations", "acc_beta1", "acc_beta2"} | {f"{w.name}/{s}" for w in weights for s in ("m", "v")}
    assert set(state) == expected
    assert state["iterations"].shape == (1,) and state["iterations"][0] == 0
    assert state["acc_beta1"].dtype == np.float32 and state["acc_beta1"][0] == np.float32(0.9)
    assert state["dense_Dense1/kernel/m"].shape == (5, 3)
    state["dense_Dense1/kernel/m"][...] = 99  # a copy: the optimizer is not affected
    assert not adam.state()["dense_Dense1/kernel/m"].any()
    adagrad = build_optimizer({"type": "adagrad", "initial_accumulator_value": 0.25})
    adagrad.build(weights)
    np.testing.assert_array_equal(adagrad.state()["dense_Dense1/bias/accumulator"], np.full(3, 0.25, np.float32))
    centered = build_optimizer({"type": "rmsprop", "centered": True})
    centered.build(weights)
    assert {"dense_Dense1/bias/rms", "dense_Dense1/bias/momentum", "dense_Dense1/bias/mg"} <= set(centered.state())
    plain = build_optimizer("rmsprop")
    plain.build(weights)
    assert "dense_Dense1/bias/rms" in plain.state() and "dense_Dense1/bias/mg" not in plain.state()


def test_load_state_rejects_mismatches():
    weights, adam = built_adam()
    good = adam.state()
    with pytest.raises(TrainctlError, match="iterations"):
        adam.load_state({k: v for k, v in good.items() if k != "iterations"})
    with pytest.raises(TrainctlError, match="acc_beta2"):
        adam.load_state({k: v for k, v in good.items() if k != "acc_beta2"})
    with pytest.raises(TrainctlError, match="shape"):
        adam.load_state({**good, "dense_Dense1/bias/m": np.zeros(4, np.float32)})
    with pytest.raises(TrainctlError, match="lacks v"):
        adam.load_state({k: v for k, v in good.items() if k != "dense_Dense1/bias/v"})
    with pytest.raises(TrainctlError, match="not a adam slot"):
        adam.load_state({**good, "dense_Dense1/bias/accumulator": np.zeros(3, np.float32)})
    adam.load_state(good)
    mismatched = build_optimizer("adam")
    mismatched.load_state({**good, "dense_Dense1/bias/m": np.zeros(4, np.float32),
                           "dense_Dense1/bias/v": np.zeros(4, np.float32)})
    with pytest.raises(TrainctlError, match="dense_Dense1/bias"):
        mismatched.apply(weights)


def test_non_trainable_weights_are_left_alone():
    rng = np.random.default_rng(0)
    weights = make_weights(rng, np.float32)
    weights[1].trainable = False
    fill_grads(weights, rng)
    frozen = weights[1].value.copy()
    adam = build_optimizer("adam")
    adam.apply(weights)
    np.testing.assert_array_equal(weights[1].value, frozen)
    assert not any(key.startswith(weights[1].name) for key in adam.state())
    assert not np.array_equal(weights[0].value, make_weights(np.random.default_rng(0), np.float32)[0].value)


def test_apply_allocates_no_weight_sized_memory():
    rng = np.random.default_rng(0)
    weights = [W("big/kernel", rng.standard_normal((300, 300)).astype(np.float32), np.zeros((300, 300), np.float32))]
    fill_grads(weights, rng)
    for spec in ["adam", {"type": "rmsprop", "centered": True, "clipnorm": 0.1}, "adadelta"]:
        optimizer = build_optimizer(spec)
        optimizer.apply(weights)  # slots and compilation happen here
        tracemalloc.start()
        for _ in range(3):
            optimizer.apply(weights)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 20_000, f"{spec}: {peak} bytes allocated per step (weight is 360 kB)"


def test_importing_does_not_import_numba():
    code = ("import sys, trainctl.nn.optimizers, trainctl.nn.initializers, trainctl.nn.regularizers; "
            "trainctl.nn.optimizers.build_optimizer('adam'); "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_optimizer_subclasses_state_only_their_update():
    for type_id in OPTIMIZERS.names():
        cls = OPTIMIZERS.get(type_id)
        assert issubclass(cls, Optimizer) and cls.type_id == type_id
        assert "apply" not in vars(cls) and "state" not in vars(cls)


# -- torch cross-checks: single steps where the formulas coincide -------------------------------


def _torch_step(torch, optimizer_cls, value, grad, steps=1, **kwargs):
    parameter = torch.nn.Parameter(torch.tensor(value, dtype=torch.float64))
    optimizer = optimizer_cls([parameter], **kwargs)
    for g in grad[:steps]:
        parameter.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return parameter.detach().numpy()


def _ours(spec, value, grads, steps=1):
    w = W("w", value.copy(), np.zeros_like(value))
    optimizer = build_optimizer(spec)
    for g in grads[:steps]:
        w.grad[...] = g
        optimizer.apply([w])
    return w.value


@pytest.mark.torch
@pytest.mark.parametrize("steps", [1, 4])
def test_torch_cross_check(steps):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    value = rng.standard_normal((4, 5))
    # |g| >= 0.5 keeps the centered variance estimate far from epsilon
    grads = [rng.choice([-1.0, 1.0], (4, 5)) * rng.uniform(0.5, 1.5, (4, 5)) for _ in range(steps)]
    exact = dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        _ours({"type": "sgd", "learning_rate": 0.1}, value, grads, steps),
        _torch_step(torch, torch.optim.SGD, value, grads, steps, lr=0.1), **exact)
    for nesterov in (False, True):
        np.testing.assert_allclose(
            _ours({"type": "momentum", "learning_rate": 0.1, "momentum": 0.9, "use_nesterov": nesterov}, value, grads, steps),
            _torch_step(torch, torch.optim.SGD, value, grads, steps, lr=0.1, momentum=0.9, nesterov=nesterov), **exact)
    # Adam: bias-corrected moments with epsilon outside the sqrt in both
    np.testing.assert_allclose(
        _ours({"type": "adam", "learning_rate": 0.01, "epsilon": 1e-8}, value, grads, steps),
        _torch_step(torch, torch.optim.Adam, value, grads, steps, lr=0.01, eps=1e-8, foreach=False), rtol=1e-10)
    # RMSProp and Adagrad: TF.js adds epsilon inside the sqrt, torch outside; with torch eps=0
    # the updates differ by about eps / (2 * mean square) relative, far below the steps (~1e-2).
    ours = _ours({"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.5}, value, grads, steps)
    theirs = _torch_step(torch, torch.optim.RMSprop, value, grads, steps, lr=0.01, alpha=0.9, momentum=0.5, eps=0.0)
    np.testing.assert_allclose(ours - value, theirs - value, rtol=1e-5, atol=1e-7)
    ours = _ours({"type": "rmsprop", "learning_rate": 0.01, "centered": True}, value, grads, steps)
    theirs = _torch_step(torch, torch.optim.RMSprop, value, grads, steps, lr=0.01, alpha=0.9, centered=True, eps=0.0)
    np.testing.assert_allclose(ours - value, theirs - value, rtol=1e-5, atol=1e-7)
    ours = _ours({"type": "adagrad", "learning_rate": 0.1}, value, grads, steps)
    theirs = _torch_step(torch, torch.optim.Adagrad, value, grads, steps, lr=0.1, initial_accumulator_value=0.1, eps=0.0)
    np.testing.assert_allclose(ours - value, theirs - value, rtol=1e-5, atol=1e-7)
