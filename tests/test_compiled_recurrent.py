"""Recurrent models on the compiled loop's general plan (kernels/recurrent_steps.py) against
step-by-step Python execution: bit-identical weights, optimizer state and histories for
LSTM, GRU (both reset conventions) and SimpleRNN, returning sequences or the last state,
behind an Embedding (mask_zero too) or a Masking layer or over strided time-series windows
(gathered per chunk), stateful, with sample and class weights; checkpoints and exact mid-epoch
resume through the CLI and the run API.
TF.js's default activation pair (linked into the loop) and other pairs (called at their
addresses, kernels/recurrent_calls.py); float32, tiny sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_compiled import _assert_identical, _checkpoint_digests, _digest, _SignalAt
from trainctl.nn.model import Sequential

N, STEPS, FEATURES, VOCAB, CLASSES = 29, 5, 2, 7, 3  # 29: the last batch of 8 is partial


def _windows():
    """[N, STEPS, FEATURES] overlapping windows of two of a series' three columns: a strided
    view with no 2-D form (ArraySource gathers it per batch, the loop per chunk)."""
    series = np.random.default_rng(0).standard_normal((N + STEPS - 1, 3)).astype(np.float32)
    x = np.lib.stride_tricks.sliding_window_view(series[:, :FEATURES], (STEPS, FEATURES))[:, 0]
    assert np.shares_memory(x, series) and x.shape == (N, STEPS, FEATURES)
    return x


def _masked_windows():
    """The windows with some whole steps at the Masking layer's mask value (0)."""
    x = _windows().copy()
    x[::3, 1] = 0.0
    x[1::4, 3:] = 0.0
    return x


def _tokens():
    return np.random.default_rng(1).integers(0, VOCAB, (N, STEPS)).astype(np.float32)


def _padded_tokens():
    """Token ids 1.. with sequences of 1 to STEPS tokens, padded with 0 at the end (mask_zero)."""
    x = np.random.default_rng(1).integers(1, VOCAB, (N, STEPS)).astype(np.float32)
    lengths = np.random.default_rng(4).integers(1, STEPS + 1, N)
    x[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0.0
    return x


def _labels(x):
    score = x.reshape(N, -1).sum(axis=1)
    return np.eye(CLASSES, dtype=np.float32)[np.digitize(score, np.quantile(score, [0.33, 0.66]))]


def _model(cell, sequences, front, optimizer, **cell_options):
    if front in ("embedding", "embedding_mask_zero"):
        layers = [{"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "input_length": STEPS,
                   "embeddings_regularizer": {"type": "l2", "l2": 0.01}, "mask_zero": front == "embedding_mask_zero"}]
    elif front == "masking":
        layers = [{"type": "masking", "input_shape": [STEPS, FEATURES]}]
    else:
        layers = [{"type": "reshape", "target_shape": [STEPS, FEATURES], "input_shape": [STEPS, FEATURES]}]
    merge_mode = cell_options.pop("bidirectional", None)  # the cell inside Bidirectional with this merge_mode
    then = cell_options.pop("then", None)
    recurrent = {"type": cell, "units": 4, "return_sequences": sequences, **cell_options}
    if merge_mode is not None:
        recurrent = {"type": "bidirectional", "merge_mode": merge_mode, "layer": recurrent}
    layers.append(recurrent)
    if then is not None:  # a layer after the recurrent one (it receives the sequences and their mask)
        layers.append(then)
    elif sequences:  # a Dense over every step, then the sequence flattened
        layers += [{"type": "dense", "units": 2, "activation": "relu"}, {"type": "flatten"}]
    layers.append({"type": "dense", "units": CLASSES, "activation": "softmax"})
    model = Sequential(layers, seed=5)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


CASES = {  # id: (cell, return_sequences, front, optimizer, cell options, fit options)
    "lstm-last-windows-adam": ("lstm", False, "windows", "adam", {}, {"validation_split": 0.2}),
    "lstm-sequences-embedding-rmsprop-sample_weights": (
        "lstm", True, "embedding", {"type": "rmsprop", "centered": True, "clipvalue": 0.5},
        {"kernel_regularizer": "l2"}, {"sample_weight": True}),
    "gru-last-embedding-adam-shuffle": ("gru", False, "embedding", "adam", {}, {"shuffle": True}),
    "gru-sequences-windows-backwards-momentum-class_weights": (
        "gru", True, "windows", {"type": "momentum", "momentum": 0.9}, {"go_backwards": True},
        {"class_weight": {0: 1.0, 1: 2.5, 2: 0.5}}),
    "gru_reset_after-sequences-windows-adam": ("gru", True, "windows", "adam", {"reset_after": True}, {}),
    "simple_rnn-last-windows-sgd-nobias": ("simple_rnn", False, "windows", "sgd", {"use_bias": False},
                                           {"shuffle": True}),
    "simple_rnn-sequences-embedding-adam": ("simple_rnn", True, "embedding", "adam",
                                            {"recurrent_regularizer": "l1"}, {"validation_split": 0.25}),
    # dropout masks drawn per chunk from the layer's generator, in step order (inputs', then the state's)
    "lstm-last-windows-adam-dropout-recurrent_dropout": ("lstm", False, "windows", "adam",
                                                         {"dropout": 0.2, "recurrent_dropout": 0.3}, {}),
    "gru-sequences-embedding-backwards-recurrent_dropout": (
        "gru", True, "embedding", "sgd", {"recurrent_dropout": 0.4, "go_backwards": True}, {"shuffle": True}),
    "simple_rnn-sequences-windows-dropout": ("simple_rnn", True, "windows", "adam", {"dropout": 0.3},
                                             {"validation_split": 0.2}),
    # a Masking layer's mask, made in the loop, read by the recurrent layer after it
    "lstm-sequences-masking-adam": ("lstm", True, "masking", "adam", {}, {}),
    "gru-last-masking-sgd-dropout": ("gru", False, "masking", "sgd", {"dropout": 0.2}, {"shuffle": True}),
    # Embedding mask_zero's mask, made in the loop from the indices, read by the recurrent layers
    "lstm-last-embedding_mask_zero-adam": ("lstm", False, "embedding_mask_zero", "adam", {}, {"shuffle": True}),
    "bidirectional_gru-concat-sequences-embedding_mask_zero-sgd-then_simple_rnn": (
        "gru", True, "embedding_mask_zero", "sgd",
        {"bidirectional": "concat", "then": {"type": "simple_rnn", "units": 3}}, {}),
    # stateful: each batch starts from the last one's final states (the first rows of a partial batch);
    # validation of larger batches (Python) reallocates the carried states the loop then reads
    "lstm-sequences-windows-stateful-validation": ("lstm", True, "windows", "adam", {"stateful": True},
                                                  {"validation_split": 0.5, "validation_batch_size": 16}),
    "gru-last-windows-stateful-recurrent_dropout": ("gru", False, "windows", "sgd",
                                                    {"stateful": True, "recurrent_dropout": 0.3}, {}),
    "bidirectional_simple_rnn-sum-sequences-windows-stateful-backwards": (
        "simple_rnn", True, "windows", "adam", {"bidirectional": "sum", "stateful": True, "go_backwards": True}, {}),
    # Bidirectional: both copies on one input (each with its own dropout generator), merged
    "bidirectional_lstm-concat-last-windows-adam-dropout-recurrent_dropout": (
        "lstm", False, "windows", "adam", {"bidirectional": "concat", "dropout": 0.2, "recurrent_dropout": 0.3}, {}),
    "bidirectional_gru-sum-sequences-masking-sgd-then_lstm": (
        "gru", True, "masking", "sgd", {"bidirectional": "sum", "then": {"type": "lstm", "units": 3}}, {"shuffle": True}),
    "bidirectional_simple_rnn-mul-sequences-embedding-adam-regularized": (
        "simple_rnn", True, "embedding", "adam",
        {"bidirectional": "mul", "kernel_regularizer": "l2", "recurrent_regularizer": "l1", "bias_regularizer": "l2"},
        {"validation_split": 0.2}),
    "bidirectional_lstm-ave-last-masking-rmsprop-recurrent_dropout": (
        "lstm", False, "masking", "rmsprop", {"bidirectional": "ave", "recurrent_dropout": 0.3}, {"shuffle": True}),
    "bidirectional_gru_reset_after-concat-sequences-windows-backwards-dropout": (
        "gru", True, "windows", "adam", {"bidirectional": "concat", "reset_after": True, "go_backwards": True,
                                         "dropout": 0.25}, {}),
}


# Activation pairs other than TF.js's defaults: the loop calls the pair's own time loops at their
# addresses (kernels/recurrent_calls.py), the overloads the Python path calls. One pair per cell
# (each pair's time loops compile on their own: ~3-4 CPU-s); the variants reuse them.
PAIRS = {
    "lstm-relu-sigmoid-last-windows-adam": ("lstm", False, "windows", "adam",
                                            {"activation": "relu", "recurrent_activation": "sigmoid"}, {}),
    "bidirectional_lstm-relu-sigmoid-concat-sequences-masking-stateful-dropout": (
        "lstm", True, "masking", "rmsprop", {"bidirectional": "concat", "activation": "relu",
                                             "recurrent_activation": "sigmoid", "stateful": True, "dropout": 0.2}, {}),
    "gru-relu-sigmoid-sequences-masking-sgd-recurrent_dropout": (
        "gru", True, "masking", "sgd", {"activation": "relu", "recurrent_activation": "sigmoid",
                                        "recurrent_dropout": 0.3}, {"shuffle": True}),
    "gru_reset_after-relu-sigmoid-last-embedding_mask_zero-backwards": (
        "gru", False, "embedding_mask_zero", "adam", {"activation": "relu", "recurrent_activation": "sigmoid",
                                                      "reset_after": True, "go_backwards": True}, {}),
    "simple_rnn-relu-sequences-windows-stateful": ("simple_rnn", True, "windows", "adam",
                                                   {"activation": "relu", "stateful": True}, {}),
}


def _fit(case, jit):
    cell, sequences, front, optimizer, cell_options, fit_options = {**CASES, **PAIRS}[case]
    x = {"embedding": _tokens, "embedding_mask_zero": _padded_tokens, "masking": _masked_windows}.get(front, _windows)()
    model = _model(cell, sequences, front, optimizer, **cell_options)
    options = dict(fit_options)
    if options.pop("sample_weight", False):
        options["sample_weight"] = np.random.default_rng(2).random(N) * 2
    history = model.fit(x, _labels(x), epochs=2, batch_size=8, verbose=0, jit_compile=jit, steps_per_execution=3,
                        **options)
    return model, history


@pytest.mark.parametrize("case", list(CASES))
def test_recurrent_models_run_compiled_bit_for_bit(case):
    compiled = _fit(case, True)
    assert compiled[0].compiled_fallback is None  # it really ran compiled
    python = _fit(case, False)
    _assert_identical(compiled, python)
    assert [layer.get_state() for layer in compiled[0].layers] == [layer.get_state() for layer in python[0].layers]


def _recurrent_layers(model):
    from trainctl.nn.layers.recurrent import Recurrent
    from trainctl.nn.layers.wrappers import Bidirectional

    for layer in model.layers:
        if isinstance(layer, Bidirectional):
            yield from (layer.forward_layer, layer.backward_layer)
        elif isinstance(layer, Recurrent):
            yield layer


def _time_loops(layer):
    """The compiled time loops (dispatchers) of the layer's cell and activation pair."""
    from trainctl.kernels import recurrent_calls, recurrent_steps

    pair = (layer.activation.code, layer.recurrent_activation.code)
    makes = recurrent_steps.TIME_LOOPS[layer.compiled_cell]
    return [recurrent_calls.kernel(make, *pair, layer.dtype) for make in makes]


@pytest.mark.parametrize("case", list(PAIRS))
def test_recurrent_activation_pairs_run_compiled_bit_for_bit(case):
    compiled = _fit(case, True)
    assert compiled[0].compiled_fallback is None
    python = _fit(case, False)
    _assert_identical(compiled, python)
    assert [layer.get_state() for layer in compiled[0].layers] == [layer.get_state() for layer in python[0].layers]
    layers = list(_recurrent_layers(compiled[0]))
    assert layers and all((layer.activation.name, layer.recurrent_activation.name) != ("tanh", "hard_sigmoid")
                          for layer in layers)
    for layer in layers:  # the loop called the overloads the Python path then called: one compile each
        assert [len(loop.overloads) for loop in _time_loops(layer)] == [1, 1], layer.name


def test_the_default_pair_is_linked_into_the_loop_and_another_is_called_at_its_address():
    from trainctl.kernels import recurrent_steps as rs
    from trainctl.kernels.codes import HARD_SIGMOID, LINEAR, RELU, SIGMOID, TANH

    assert rs.time_loop_addresses(rs.CELL_LSTM, TANH, HARD_SIGMOID, np.float32) == (0, 0)
    assert rs.time_loop_addresses(rs.CELL_SIMPLE, TANH, LINEAR, np.float32) == (0, 0)  # SimpleRNN has no gates
    forward, backward = rs.time_loop_addresses(rs.CELL_LSTM, RELU, SIGMOID, np.float32)
    assert forward and backward and forward != backward


def test_the_loop_refuses_arguments_other_than_those_an_address_is_taken_for():
    """A call through an address with other argument types than the overload's would read the
    arguments wrongly: recurrent_calls checks them when the caller compiles."""
    from numba.core.errors import TypingError

    from trainctl.jit import njit
    from trainctl.kernels import recurrent_steps as rs

    @njit(cache=False)
    def call(entry, pre):
        rs._lstm_forward(entry, (pre, pre))

    with pytest.raises(TypingError, match="SIGNATURES"):
        call(0, np.zeros((1, 1, 1), np.float32))


def _token_grid():
    """[N, STEPS, 2] token ids 0.. (0: padding, for mask_zero over both axes)."""
    return np.random.default_rng(6).integers(0, VOCAB, (N, STEPS, 2)).astype(np.float32)


def _grid_model(*after):
    layers = [{"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True, "input_shape": [STEPS, 2]},
              *after, {"type": "flatten"}, {"type": "dense", "units": CLASSES, "activation": "softmax"}]
    model = Sequential(layers, seed=5)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def test_an_embedding_mask_over_two_axes_runs_compiled_bit_for_bit():
    """Embedding mask_zero over [steps, 2] makes a mask of one value per index, which the Dense
    after it passes on and Flatten ends, as Python's: no layer reads it. The loop makes it as
    compute_mask does (the last batch's, compared) and trains the same numbers."""
    x = _token_grid()
    runs = []
    for jit in (True, False):
        model = _grid_model({"type": "dense", "units": 2, "activation": "relu"})
        runs.append((model, model.fit(x, _labels(x), epochs=2, batch_size=8, verbose=0, shuffle=False,
                                      jit_compile=jit, steps_per_execution=3)))
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)
    last = N - (N - 1) // 8 * 8  # the last batch's rows (29 = 3 * 8 + 5), the last step of both paths
    expected = (x[-last:] != 0).reshape(-1)
    assert expected.any() and not expected.all()
    assert np.array_equal(runs[0][0].layers[0]._keep[:expected.size], expected.astype(np.float32))
    assert np.array_equal(runs[1][0].layers[0]._mask[:last].reshape(-1), expected)


def test_a_mask_over_two_axes_reaching_a_recurrent_layer_is_refused_at_build():
    """A recurrent layer or Bidirectional reads one mask value per step. A mask over [steps, 2]
    passed on to it by layers that keep the steps axis (Embedding mask_zero over [steps, 2], a
    Masking layer over [steps, 2, features]) cannot be read: step by step, fit died in numpy's
    broadcast; TF.js's Reshape refuses masks at build. The model refuses it at build, at the
    reader's place in the config, naming the reader, the maker and both shapes."""
    from trainctl.errors import ConfigValueError

    with pytest.raises(ConfigValueError) as refused:
        _grid_model({"type": "reshape", "target_shape": [STEPS, 6]}, {"type": "lstm", "units": 3})
    assert refused.value.problems == [("model.layers.2", f"lstm_LSTM1 reads a mask of one value per step, [{STEPS}], "
                                                         f"but the mask embedding_Embedding1 makes reaches it over [{STEPS},2]")]
    with pytest.raises(ConfigValueError) as refused:
        Sequential([{"type": "masking", "input_shape": [STEPS, 2, FEATURES]}, {"type": "dense", "units": 2},
                    {"type": "reshape", "target_shape": [STEPS, 4]},
                    {"type": "bidirectional", "layer": {"type": "gru", "units": 2}}], shapes_only=True)
    assert refused.value.problems == [("model.layers.3", f"bidirectional_Bidirectional1 reads a mask of one value per "
                                                         f"step, [{STEPS}], but the mask masking_Masking1 makes "
                                                         f"reaches it over [{STEPS},2]")]


def _grid_windows():
    """[N, STEPS, 2, FEATURES] values with some (step, position) pairs all 0 (masked by a Masking
    over the last axis) and some with only one value 0 (kept)."""
    x = np.random.default_rng(7).standard_normal((N, STEPS, 2, FEATURES)).astype(np.float32)
    x[::3, 1, 0] = 0.0
    x[1::4, 3:, 1] = 0.0
    x[2::5, 2, 1, 0] = 0.0
    return x


@pytest.mark.parametrize("front", ["embedding_mask_zero", "rank4"])
def test_masking_over_two_axes_runs_compiled_bit_for_bit(front):
    """Masking makes its mask over every axis but the last from its input alone, as TF.js and
    Keras do: over [steps, 2] for [steps, 2, features] values (rank4), and after an Embedding
    mask_zero over [steps, 2] it drops the Embedding's mask (its embeddings are never all 0, so
    it keeps every index, padding too). The Dense after it passes the mask on, Flatten ends it.
    Both paths make it as TF.js does (the last batch's, compared) and train the same bits."""
    x = _token_grid() if front == "embedding_mask_zero" else _grid_windows()
    runs = []
    for jit in (True, False):
        if front == "embedding_mask_zero":
            model = _grid_model({"type": "masking"}, {"type": "dense", "units": 2, "activation": "relu"})
        else:
            model = Sequential([{"type": "masking", "input_shape": [STEPS, 2, FEATURES]},
                                {"type": "dense", "units": 2, "activation": "relu"}, {"type": "flatten"},
                                {"type": "dense", "units": CLASSES, "activation": "softmax"}], seed=5)
            model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        runs.append((model, model.fit(x, _labels(x), epochs=2, batch_size=8, verbose=0, shuffle=False,
                                      jit_compile=jit, steps_per_execution=3)))
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)
    masking = len(runs[0][0].layers) - 4  # the Masking layer: after the Embedding, or first
    last = N - (N - 1) // 8 * 8  # the last batch's rows, the last step of both paths
    if front == "embedding_mask_zero":
        expected = np.ones((last, STEPS, 2), bool)
        assert not (x[-last:] != 0).all()  # some padding, which the Embedding's mask dropped
    else:
        expected = (x[-last:] != 0).any(axis=-1)
        assert not expected.all() and expected.any(axis=-1).all()  # a mask of one value per step would keep all
    assert np.array_equal(runs[0][0].layers[masking]._keep[:expected.size], expected.reshape(-1).astype(np.float32))
    assert np.array_equal(runs[1][0].layers[masking]._mask[:last], expected)


# TimeDistributed around a recurrent layer: the inner layer over n * steps sequences (each step's
# FEATURES values as a sequence of 1-value steps), its dropout draws for those rows, no mask for it
TIME_DISTRIBUTED = {  # id: (layers, data)
    "lstm-dropout-recurrent_dropout-masking-then_lstm": ([  # the Masking mask passes the TimeDistributed to the LSTM
        {"type": "masking", "input_shape": [STEPS, FEATURES]},
        {"type": "reshape", "target_shape": [STEPS, FEATURES, 1]},
        {"type": "time_distributed", "layer": {"type": "lstm", "units": 3, "dropout": 0.2, "recurrent_dropout": 0.3}},
        {"type": "lstm", "units": 4}], _masked_windows),
    "bidirectional_gru-sequences-dropout": ([
        {"type": "reshape", "target_shape": [STEPS, FEATURES, 1], "input_shape": [STEPS, FEATURES]},
        {"type": "time_distributed", "layer": {"type": "bidirectional", "merge_mode": "concat",
                                               "layer": {"type": "gru", "units": 2, "return_sequences": True,
                                                         "dropout": 0.25}}},
        {"type": "flatten"}], _windows),
    "simple_rnn-stateful-go_backwards": ([
        {"type": "reshape", "target_shape": [STEPS, FEATURES, 1], "input_shape": [STEPS, FEATURES]},
        {"type": "time_distributed", "layer": {"type": "simple_rnn", "units": 3, "stateful": True,
                                               "go_backwards": True}},
        {"type": "flatten"}], _windows),
}


def _both_ways(layers, x, **fit_options):
    """The fits of layers + a softmax Dense on x, jit_compile true and false."""
    runs = []
    for jit in (True, False):
        model = Sequential([*layers, {"type": "dense", "units": CLASSES, "activation": "softmax"}], seed=5)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        runs.append((model, model.fit(x, _labels(x), epochs=2, batch_size=8, verbose=0, jit_compile=jit,
                                      steps_per_execution=3, **fit_options)))
    return runs


@pytest.mark.parametrize("case", list(TIME_DISTRIBUTED))
def test_time_distributed_recurrent_layers_run_compiled_bit_for_bit(case):
    layers, data = TIME_DISTRIBUTED[case]
    runs = _both_ways(layers, data(), validation_split=0.2)
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)
    assert [layer.get_state() for layer in runs[0][0].layers] == [layer.get_state() for layer in runs[1][0].layers]


def _half_windows():
    """[N, STEPS, 2 * FEATURES] values: some whole steps 0 (the outer Masking's mask value), in
    others one half all 0.5 (the inner Masking's mask value) or only one value 0.5 (kept)."""
    x = np.random.default_rng(8).standard_normal((N, STEPS, 2 * FEATURES)).astype(np.float32)
    x[::3, 4] = 0.0
    x[1::4, 1, :FEATURES] = 0.5
    x[2::5, 2:, FEATURES:] = 0.5
    x[3::7, 3, 0] = 0.5
    return x


# TimeDistributed around an Embedding or a Masking layer: the inner layer over the n * steps inner
# samples; its mask goes nowhere (TF.js, Keras: the TimeDistributed passes on the mask it received)
TIME_DISTRIBUTED_MASKERS = {  # id: (layers, data)
    "embedding_mask_zero-regularized-then_lstm": ([
        {"type": "time_distributed", "input_shape": [STEPS, 2],
         "layer": {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True,
                   "embeddings_regularizer": {"type": "l2", "l2": 0.01}}},
        {"type": "reshape", "target_shape": [STEPS, 6]}, {"type": "lstm", "units": 4}], _token_grid),
    "embedding-after_reshape": ([  # the indices still the model's input, checked before the fit
        {"type": "reshape", "target_shape": [STEPS, 2], "input_shape": [2 * STEPS]},
        {"type": "time_distributed", "layer": {"type": "embedding", "input_dim": VOCAB, "output_dim": 2}},
        {"type": "flatten"}], lambda: _token_grid().reshape(N, -1)),
    "masking-inside_a_mask_read_by_lstm": ([  # the outer Masking's mask passes the TimeDistributed
        {"type": "masking", "input_shape": [STEPS, 2 * FEATURES]},
        {"type": "reshape", "target_shape": [STEPS, 2, FEATURES]},
        {"type": "time_distributed", "layer": {"type": "masking", "mask_value": 0.5}},
        {"type": "reshape", "target_shape": [STEPS, 2 * FEATURES]}, {"type": "lstm", "units": 3}], _half_windows),
}


@pytest.mark.parametrize("case", list(TIME_DISTRIBUTED_MASKERS))
def test_time_distributed_embedding_and_masking_run_compiled_bit_for_bit(case):
    layers, data = TIME_DISTRIBUTED_MASKERS[case]
    x = data()
    runs = _both_ways(layers, x, shuffle=False)
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)
    if case.startswith("masking"):  # the last step's inner mask, over each step's two halves
        inner = [layer.inner for layer in (runs[0][0].layers[2], runs[1][0].layers[2])]
        rows = (N - (N - 1) // 8 * 8) * STEPS  # the last batch's inner samples
        mask = inner[1]._mask[:rows]  # [rows, 2]
        assert not mask.all() and mask.any(axis=-1).all()  # a mask of one value per inner sample would keep all
        assert np.array_equal(inner[0]._keep[:mask.size], mask.reshape(-1).astype(np.float32))


@pytest.mark.parametrize("jit", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("front", ["time_distributed", "reshape-time_distributed", "reshape-embedding"])
def test_an_embeddings_bad_index_is_located_in_the_data_wherever_the_embedding_reads_the_input(front, jit):
    """An Embedding reading the model's input (inside a TimeDistributed, after a Reshape) gets
    its indices checked before the first step, the message naming the data row and the position
    in it: the loop's lookup trusts them (it read outside the table), and step by step the
    TimeDistributed's inner rows were named (row k of the batch's n * steps)."""
    from trainctl.errors import DataError

    embedding = {"type": "embedding", "input_dim": VOCAB, "output_dim": 2}
    reshape = {"type": "reshape", "target_shape": [STEPS, 2], "input_shape": [2 * STEPS]}
    layers = {"time_distributed": [{"type": "time_distributed", "layer": embedding, "input_shape": [STEPS, 2]}],
              "reshape-time_distributed": [reshape, {"type": "time_distributed", "layer": embedding}],
              "reshape-embedding": [reshape, embedding]}[front]
    x = _token_grid()
    x[13, 3, 1] = VOCAB
    x = x if front == "time_distributed" else x.reshape(N, -1)
    model = Sequential([*layers, {"type": "flatten"}, {"type": "dense", "units": CLASSES, "activation": "softmax"}])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(DataError) as bad:
        model.fit(x, _labels(x), epochs=1, batch_size=8, verbose=0, jit_compile=jit, steps_per_execution=3)
    assert str(bad.value) == (f"training data: row 14: embedding_Embedding1 index {VOCAB} (position 7) is not an "
                              f"integer in [0, {VOCAB})")


def test_an_embedding_after_a_computing_layer_trains_from_python_saying_why():
    """An Embedding's indices computed in the step (here a Dense's constant 1.0, which its zero
    gradient keeps) cannot be checked before the fit, and the loop's lookup trusts its indices:
    the fit trains from Python, whose lookup checks every index."""
    layers = [{"type": "dense", "units": 1, "kernel_initializer": "zeros", "bias_initializer": "ones",
               "input_shape": [STEPS, 1]}, {"type": "reshape", "target_shape": [STEPS]},
              {"type": "embedding", "input_dim": VOCAB, "output_dim": 2}, {"type": "flatten"}]
    runs = _both_ways(layers, _windows()[..., :1])
    assert runs[0][0].compiled_fallback == ("layer embedding_Embedding1 reads values the step computes, which fit "
                                            "cannot check beforehand")
    _assert_identical(*runs)


# -- the CLI, checkpoints and exact resume of a sequence config -------------------------------
DATA = Path(__file__).resolve().parents[1] / "data" / "electricity_load.csv"


def _load_config(name: str, seed: int, recurrent: str, batch_size: int, steps_per_execution: int) -> str:
    """A config of `recurrent` (a YAML flow mapping, the first layer) then Dense 1, trained on
    windows of the electricity-load series."""
    return f"""\
name: {name}
seed: {seed}
model:
  layers:
    - {recurrent}
    - {{type: dense, units: 1}}
optimizer: {{type: adam, learning_rate: 0.01}}
loss: mean_squared_error
metrics: [mae]
data:
  train: {{csv: {DATA}, target: load_mw, window: 6, horizon: 1, stride: 3}}
  validation_split: 0.2
  preprocessing: [standardize]
  target_preprocessing: [standardize]
fit: {{epochs: 2, batch_size: {batch_size}, shuffle: true, steps_per_execution: {steps_per_execution}}}
"""


def _train_both_ways(tmp_path, text: str, *options, after_compiled=lambda: None) -> Path:
    """`trainctl train` of the config text with jit_compile true (then after_compiled()) and false
    into tmp_path/compiled and tmp_path/python; asserts equal weights, optimizer state, history."""
    from tests.test_cli import invoke

    config = tmp_path / "config.yaml"
    config.write_text(text)
    for name, jit in (("compiled", "true"), ("python", "false")):
        result = invoke(["train", config, "--out", tmp_path / name, "--set", f"fit.jit_compile={jit}", *options])
        assert result.exit_code == 0, result.output
        if jit == "true":
            after_compiled()
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "compiled" / name) == _digest(tmp_path / "python" / name), name
    return config


CONFIG = _load_config("load-chunks", 2, "{type: lstm, units: 6, input_shape: [6, 2]}", 64, 4)


def test_sequence_config_trains_compiled_through_the_cli_and_resumes_exactly(tmp_path, monkeypatch):
    from trainctl.config import load_config
    from trainctl.runs.train import resume_training, train_from_config
    from trainctl.train.compiled import CompiledSteps
    from trainctl.train.resume import TrainingInterrupted
    from trainctl.train.trainer import Trainer

    chunks, python_steps = [], []
    run, train_batch = CompiledSteps.run, Trainer.train_batch
    monkeypatch.setattr(CompiledSteps, "run", lambda self, *args: chunks.append(args[2]) or run(self, *args))
    monkeypatch.setattr(Trainer, "train_batch", lambda self, *args: python_steps.append(1) or train_batch(self, *args))

    def ran_compiled():
        assert not python_steps and len(chunks) > 2  # the CLI's fit ran compiled, in chunks

    config = _train_both_ways(tmp_path, CONFIG, "--checkpoint-every", "5", "--keep-checkpoints", "100",
                              after_compiled=ran_compiled)
    assert sum(chunks) == len(python_steps) > 10  # the same steps, each on one path
    digests = _checkpoint_digests(tmp_path / "compiled")
    assert digests == _checkpoint_digests(tmp_path / "python") and any("step" in key for key in digests)
    with pytest.raises(TrainingInterrupted) as stopped:
        train_from_config(load_config(config), out=tmp_path / "interrupted", checkpoint_every=5,
                          keep_checkpoints=100, callbacks=[_SignalAt(5)], handle_signals=True)
    assert stopped.value.epoch == 1 and stopped.value.batch >= 5  # mid-epoch, at a chunk end
    resume_training(tmp_path / "interrupted")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "interrupted" / name) == _digest(tmp_path / "compiled" / name), name


BIDIRECTIONAL_CONFIG = _load_config(
    "load-bidirectional", 3, "{type: bidirectional, input_shape: [6, 2], layer: {type: lstm, units: 5, dropout: 0.1}}",
    32, 8)


def test_bidirectional_lstm_config_trains_compiled_through_the_cli(tmp_path, monkeypatch):
    from trainctl.train.compiled import CompiledSteps

    fallbacks, chunks = [], []
    unsupported, run = CompiledSteps.unsupported, CompiledSteps.run
    monkeypatch.setattr(CompiledSteps, "unsupported",
                        staticmethod(lambda *args: fallbacks.append(unsupported(*args)) or fallbacks[-1]))
    monkeypatch.setattr(CompiledSteps, "run", lambda self, *args: chunks.append(args[2]) or run(self, *args))

    def ran_compiled():  # model.compiled_fallback was None: every step ran in chunks of up to 8
        assert fallbacks == [None] and len(chunks) > 2 and max(chunks) == 8

    _train_both_ways(tmp_path, BIDIRECTIONAL_CONFIG, after_compiled=ran_compiled)
