"""Recurrent layers: finite-difference gradients (float64) for every layer and option, a naive
numpy reference of each cell's formulas, masking, state, names and summary rows."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.gradients import numeric_grad
from trainctl.errors import ConfigValueError
from trainctl.nn.model import Sequential


def _restore_rngs(model, states):
    for layer, state in zip(model.layers, states):
        if state:
            layer.set_state(state)


def check_gradients(layers, x, *, training=False, rtol=1e-6, atol=1e-8, dx_where=None):
    """Loss = sum(R * model(x)); backward(R) must match central differences for x and every
    weight. With training on, every evaluation replays the same dropout masks."""
    model = Sequential(layers, seed=3, dtype=np.float64)
    model.allocate(x.shape[0])
    rng = np.random.default_rng(0)
    states = [layer.get_state() for layer in model.layers]
    r = rng.standard_normal((x.shape[0], *model.output_shape))

    def loss(inputs=x) -> float:
        _restore_rngs(model, states)
        return float(np.sum(r * model.forward(inputs, training=training)))

    loss()
    last = len(model.layers) - 1
    dy = r.copy()
    for index in range(last, -1, -1):
        dy = model.layers[index].backward(dy, True)
    analytic = {w.name: w.grad.copy() for w in model.weights}
    dx = dy.copy()
    for weight in model.weights:
        expected = numeric_grad(lambda _: loss(), weight.value)
        np.testing.assert_allclose(analytic[weight.name], expected, rtol=rtol, atol=atol, err_msg=weight.name)
    x = x.copy()
    expected_dx = numeric_grad(lambda v: loss(v), x)
    if dx_where is not None:  # where moving x moves the mask too, a difference quotient means nothing
        dx, expected_dx = dx[dx_where], expected_dx[dx_where]
    np.testing.assert_allclose(dx, expected_dx, rtol=rtol, atol=atol, err_msg="dx")
    return model


RNN_CASES = [
    {"type": "simple_rnn", "units": 3},
    {"type": "simple_rnn", "units": 3, "activation": "relu", "return_sequences": True},
    {"type": "lstm", "units": 3},
    {"type": "lstm", "units": 3, "return_sequences": True, "go_backwards": True, "unit_forget_bias": True},
    {"type": "lstm", "units": 2, "recurrent_activation": "sigmoid", "activation": "softsign"},
    {"type": "gru", "units": 3},
    {"type": "gru", "units": 3, "return_sequences": True, "go_backwards": True},
    {"type": "gru", "units": 3, "reset_after": True, "recurrent_activation": "sigmoid"},
    {"type": "gru", "units": 2, "reset_after": True, "return_sequences": True, "use_bias": False},
]


def _inputs(n=2, steps=4, features=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, steps, features)) * 0.7


def _nonzero_bias(spec):
    """Bias away from zero so every gate's path is exercised."""
    return {**spec, "bias_initializer": {"type": "random_normal", "stddev": 0.3}} if spec.get("use_bias", True) else spec


@pytest.mark.parametrize("spec", RNN_CASES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items() if k != "type") or s["type"])
def test_recurrent_gradients(spec):
    check_gradients([{**_nonzero_bias(spec), "input_shape": [4, 3]}], _inputs())


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_gradients_with_dropout_in_training(kind):
    spec = {"type": kind, "units": 3, "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": True}
    check_gradients([{**_nonzero_bias(spec), "input_shape": [4, 3]}], _inputs(), training=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradients_through_masked_steps(kind):
    x = _inputs(n=3, steps=5)
    x[0, 3:] = 0.0  # padded at the end
    x[1, 0] = 0.0  # a hole at the start
    x[2, 2] = 0.0
    model = check_gradients([{"type": "masking", "mask_value": 0.0, "input_shape": [5, 3]},
                             _nonzero_bias({"type": kind, "units": 2, "return_sequences": True})], x,
                            dx_where=np.broadcast_to(np.any(x != 0, axis=-1, keepdims=True), x.shape))
    assert not model.layers[1]._mask[:3].all()  # the kernels did see masked steps


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_gradients(merge_mode):
    check_gradients([{"type": "bidirectional", "merge_mode": merge_mode, "input_shape": [4, 3],
                      "layer": _nonzero_bias({"type": "lstm", "units": 2, "return_sequences": merge_mode != "ave"})}],
                    _inputs())


def test_time_distributed_gradients():
    check_gradients([{"type": "gru", "units": 3, "return_sequences": True, "input_shape": [4, 3]},
                     {"type": "time_distributed", "layer": {"type": "dense", "units": 2, "activation": "tanh"}}],
                    _inputs())


def test_time_distributed_masking_zeroes_the_masked_steps_of_each_inner_sequence():
    # TimeDistributed ran an inner Masking's forward without its compute_mask, so it multiplied
    # by an unfilled mask buffer; each inner [steps, features] sequence is masked on its own
    from trainctl.nn.model import Sequential

    model = Sequential([{"type": "time_distributed", "input_shape": [2, 3, 2],
                         "layer": {"type": "masking", "mask_value": 0.0}}], seed=0)
    x = np.ones((4, 2, 3, 2), np.float32)
    x[1, 0, 2] = 0.0  # one inner step all mask_value
    x[2, 1, 0, 0] = 0.0  # one feature only: the step is kept
    model.predict(np.zeros_like(x), batch_size=4)  # leaves an all-False mask in the buffer
    y = model.predict(x, batch_size=4)
    expected = x * np.any(x != 0.0, axis=-1, keepdims=True)
    np.testing.assert_array_equal(y, expected)


def test_masking_masks_each_position_over_the_last_axis_and_drops_the_mask_it_receives():
    # TF.js 4.22 / Keras Masking: mask = any(x != mask_value, axis=-1), y = x * mask[..., None];
    # the mask of the layer before (an Embedding's mask_zero) plays no part
    from trainctl.nn.model import Sequential

    model = Sequential([{"type": "masking", "mask_value": 0.5, "input_shape": [3, 2, 2]}], seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    x[0, 1, 0] = 0.5  # one position of a step
    x[1, 2] = 0.5  # a whole step
    x[2, 0, 1, 0] = 0.5  # one value only: kept
    expected = np.any(x != 0.5, axis=-1)
    np.testing.assert_array_equal(model.predict(x, batch_size=4), x * expected[..., None])
    np.testing.assert_array_equal(model.layers[0]._mask[:4], expected)

    model = Sequential([{"type": "embedding", "input_dim": 4, "output_dim": 2, "mask_zero": True, "input_length": 3},
                        {"type": "masking"}], seed=0)
    tokens = np.array([[1, 2, 0], [3, 0, 0]], np.float32)
    model.predict(tokens, batch_size=2)
    embedded = model.layers[0].embeddings.value[tokens.astype(int)]
    assert np.all(embedded != 0)  # so the Masking keeps every step, the padding (index 0) too
    np.testing.assert_array_equal(model.layers[1]._mask[:2], np.ones((2, 3), bool))


# -- forward against the formulas, written out in numpy -----------------------------------------
def _hard_sigmoid(z):
    return np.clip(0.2 * z + 0.5, 0.0, 1.0)


def _reference(layer, x, mask=None):
    """The TF.js cell equations step by step (recurrent.ts), for one layer."""
    p = layer.params
    kernel, recurrent = layer.kernel.value, layer.recurrent_kernel.value
    bias = layer.bias.value if layer.bias is not None else None
    n, steps, _ = x.shape
    u = p.units
    act = np.tanh
    ract = _hard_sigmoid
    h = np.zeros((n, u))
    c = np.zeros((n, u))
    outputs = []
    order = range(steps - 1, -1, -1) if p.go_backwards else range(steps)
    for s in order:
        xt = x[:, s]
        if layer.class_name == "SimpleRNN":
            new_h, new_c = act(xt @ kernel + h @ recurrent + (bias if bias is not None else 0)), c
        elif layer.class_name == "LSTM":
            z = xt @ kernel + h @ recurrent + (bias if bias is not None else 0)
            i, f, g, o = ract(z[:, :u]), ract(z[:, u:2 * u]), act(z[:, 2 * u:3 * u]), ract(z[:, 3 * u:])
            new_c = f * c + i * g
            new_h = o * act(new_c)
        elif not p.reset_after:
            xw = xt @ kernel + (bias if bias is not None else 0)
            inner = h @ recurrent[:, :2 * u]
            z, r = ract(xw[:, :u] + inner[:, :u]), ract(xw[:, u:2 * u] + inner[:, u:])
            hh = act(xw[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
            new_h, new_c = z * h + (1 - z) * hh, c
        else:
            xw = xt @ kernel + (bias[0] if bias is not None else 0)
            rec = h @ recurrent + (bias[1] if bias is not None else 0)
            z, r = ract(xw[:, :u] + rec[:, :u]), ract(xw[:, u:2 * u] + rec[:, u:2 * u])
            hh = act(xw[:, 2 * u:] + r * rec[:, 2 * u:])
            new_h, new_c = z * h + (1 - z) * hh, c
        if mask is not None:
            keep = mask[:, s:s + 1]
            new_h = np.where(keep, new_h, h)
            new_c = np.where(keep, new_c, c)
        h, c = new_h, new_c
        outputs.append(h)
    return np.stack(outputs, axis=1) if p.return_sequences else h


@pytest.mark.parametrize("spec", RNN_CASES[:8], ids=lambda s: s["type"] + str(len(s)))
def test_forward_matches_the_cell_equations(spec):
    if spec.get("activation") not in (None, "tanh") or spec.get("recurrent_activation") not in (None, "hard_sigmoid"):
        pytest.skip("the reference is written for tanh / hard_sigmoid")
    model = Sequential([{**_nonzero_bias(spec), "input_shape": [6, 3]}], seed=5, dtype=np.float64)
    x = _inputs(n=4, steps=6)
    np.testing.assert_allclose(model.predict(x, batch_size=3), _reference(model.layers[0], x), rtol=1e-12, atol=1e-12)


def test_masked_steps_keep_the_previous_state():
    model = Sequential([{"type": "masking", "input_shape": [5, 2]},
                        {"type": "lstm", "units": 3, "return_sequences": True}], seed=0, dtype=np.float64)
    x = _inputs(n=2, steps=5, features=2)
    x[0, 2] = 0.0
    x[1, 3:] = 0.0
    y = model.predict(x)
    np.testing.assert_array_equal(y[0, 2], y[0, 1])
    np.testing.assert_array_equal(y[1, 4], y[1, 2])
    mask = np.any(x != 0, axis=-1)
    np.testing.assert_allclose(y, _reference(model.layers[1], x, mask), rtol=1e-12, atol=1e-12)


def test_names_params_and_summary_rows_follow_tfjs():
    model = Sequential([{"type": "lstm", "units": 16, "input_shape": [10, 8], "return_sequences": True},
                        {"type": "gru", "units": 4},
                        {"type": "dense", "units": 1}], seed=0)
    assert [w.name for w in model.weights[:3]] == ["lstm_LSTM1/kernel", "lstm_LSTM1/recurrent_kernel", "lstm_LSTM1/bias"]
    assert [tuple(w.value.shape) for w in model.weights[:3]] == [(8, 64), (16, 64), (64,)]
    rows = model.summary_rows()
    assert (rows[0].name, rows[0].class_name, rows[0].output_shape, rows[0].n_params) == \
        ("lstm_LSTM1", "LSTM", (None, 10, 16), 1600)
    assert (rows[1].name, rows[1].output_shape, rows[1].n_params) == ("gru_GRU1", (None, 4), 3 * 4 * (16 + 4 + 1))


def test_bidirectional_names_and_shapes():
    model = Sequential([{"type": "bidirectional", "input_shape": [7, 3], "layer": {"type": "lstm", "units": 5}}], seed=0)
    assert model.output_shape == (10,)
    assert [w.name for w in model.weights] == [
        "bidirectional_Bidirectional1/forward_lstm_LSTM1/kernel",
        "bidirectional_Bidirectional1/forward_lstm_LSTM1/recurrent_kernel",
        "bidirectional_Bidirectional1/forward_lstm_LSTM1/bias",
        "bidirectional_Bidirectional1/backward_lstm_LSTM1/kernel",
        "bidirectional_Bidirectional1/backward_lstm_LSTM1/recurrent_kernel",
        "bidirectional_Bidirectional1/backward_lstm_LSTM1/bias"]
    assert model.summary_rows()[0].n_params == 2 * 4 * 5 * (3 + 5 + 1)


def test_unit_forget_bias_and_defaults():
    lstm = Sequential([{"type": "lstm", "units": 2, "unit_forget_bias": True, "input_shape": [3, 1]}]).layers[0]
    np.testing.assert_array_equal(lstm.bias.value, [0, 0, 1, 1, 0, 0, 0, 0])
    plain = Sequential([{"type": "lstm", "units": 2, "input_shape": [3, 1]}]).layers[0]
    np.testing.assert_array_equal(plain.bias.value, np.zeros(8))  # TF.js: off unless given
    assert plain.recurrent_activation.name == "hard_sigmoid" and plain.activation.name == "tanh"
    recurrent = plain.recurrent_kernel.value.astype(np.float64)  # orthogonal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(2), atol=1e-5)


def test_stateful_carries_state_across_batches_and_resets():
    spec = {"type": "gru", "units": 3, "stateful": True, "input_shape": [4, 2]}
    model = Sequential([spec], seed=0, dtype=np.float64)
    x = _inputs(n=2, steps=4, features=2)
    first = model.predict(x).copy()
    saved = model.layers[0].get_state()  # JSON-able: what a checkpoint stores
    second = model.predict(x).copy()
    assert not np.allclose(first, second)  # the second batch started from the first's final state
    model.layers[0].reset_states()
    np.testing.assert_array_equal(model.predict(x), first)
    model.layers[0].set_state(saved)
    np.testing.assert_array_equal(model.predict(x), second)


def test_sequence_input_shape_and_return_state_are_located_errors():
    with pytest.raises(ConfigValueError, match="needs inputs \\[steps, features\\]"):
        Sequential([{"type": "lstm", "units": 2, "input_shape": [5]}])
    with pytest.raises(ConfigValueError, match="return_state"):
        Sequential([{"type": "lstm", "units": 2, "return_state": True, "input_shape": [5, 1]}])
