"""Streaming pipeline: shuffle-buffer semantics, batching, repeat/take, the BatchSource shape."""

import subprocess
import sys

import numpy as np
import pytest

from trainctl.data import DataConfig, load_data
from trainctl.errors import DataError


def stream(tmp_path, n=1000, loss="sparse_categorical_crossentropy", **options):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (np.arange(n) % 4).astype(np.int64))
    cfg = {"train": {"stream": {"source": {"npy": "x.npy", "targets": "y.npy"}, "chunk_rows": 64, **options}}}
    return load_data(DataConfig.model_validate(cfg), 7, tmp_path, loss=loss).stream


def order(source, epoch, batch_size=32):
    rows = []
    for xb, yb, wb in source.batches(epoch, batch_size):
        np.testing.assert_array_equal(yb[:, 0], (xb[:, 0] // 3) % 4)  # x and y stay zipped
        assert wb is None
        rows.append(xb[:, 0] // 3)
    return np.concatenate(rows).astype(np.int64)


def test_shuffle_buffer_is_a_seeded_permutation_different_each_epoch(tmp_path):
    s = stream(tmp_path, shuffle={"buffer_size": 100})
    first = order(s, 0)
    assert sorted(first.tolist()) == list(range(1000))
    assert not np.array_equal(first, np.arange(1000))
    np.testing.assert_array_equal(first, order(s, 0))  # reproducible
    assert not np.array_equal(first, order(s, 1))  # reshuffled per epoch
    fixed = stream(tmp_path, shuffle={"buffer_size": 100, "reshuffle_each_iteration": False})
    np.testing.assert_array_equal(order(fixed, 0), order(fixed, 3))


def test_shuffle_buffer_matches_tf_data_reference(tmp_path):
    """A row can only move as far ahead as the buffer lets it: the naive tf.data algorithm
    with the same random slots gives exactly the same order."""
    from trainctl.seeding import rng_for

    s = stream(tmp_path, n=300, shuffle={"buffer_size": 50})
    got = order(s, 2, batch_size=7)
    rng = rng_for(7, "shuffle-buffer", 2)
    buffer, out = list(range(50)), []
    slots_per_chunk = []
    for start in range(0, 300, 64):  # the stream draws slots once per chunk of 64 rows
        incoming = list(range(max(start, 50), min(start + 64, 300)))
        if incoming:
            slots_per_chunk.append((incoming, rng.integers(0, 50, len(incoming), dtype=np.int64)))
    for incoming, slots in slots_per_chunk:
        for row, slot in zip(incoming, slots):
            out.append(buffer[slot])
            buffer[slot] = row
    out += [buffer[i] for i in rng.permutation(50)]
    np.testing.assert_array_equal(got, out)
    assert max(i - pos for pos, i in enumerate(got)) <= 50  # no row jumps further than the buffer


def test_no_shuffle_is_file_order_and_partial_last_batch(tmp_path):
    s = stream(tmp_path, n=100)
    np.testing.assert_array_equal(order(s, 0), np.arange(100))
    sizes = [len(xb) for xb, _, _ in s.batches(0, 32)]
    assert sizes == [32, 32, 32, 4] and s.n_batches(32) == 4


def test_drop_remainder_repeat_take_and_start_batch(tmp_path):
    s = stream(tmp_path, n=100, drop_remainder=True, repeat=2)
    assert [len(b[0]) for b in s.batches(0, 32)] == [32] * 6 and s.n_batches(32) == 6
    t = stream(tmp_path, n=100, take=2)
    assert len(list(t.batches(0, 32))) == 2 and t.n_batches(32) == 2
    u = stream(tmp_path, n=100)
    rest = [xb[:, 0].copy() for xb, _, _ in u.batches(0, 32, start_batch=2)]
    np.testing.assert_array_equal(np.concatenate(rest) // 3, np.arange(64, 100))


def test_batch_source_protocol_shapes(tmp_path):
    s = stream(tmp_path, n=100, loss="categorical_crossentropy")
    assert s.x_shape == (3,) and s.y_shape == (4,)
    xb, yb, wb = next(iter(s.batches(0, 10)))
    assert xb.shape == (10, 3) and yb.shape == (10, 4) and xb.dtype == yb.dtype == np.float32


def test_stream_matches_in_memory_data(tmp_path):
    np.savetxt(tmp_path / "d.csv", np.c_[np.arange(50), np.arange(50) * 2.0, np.arange(50) % 3], delimiter=",",
               header="a,b,label", comments="", fmt="%g")
    steps = [{"type": "standardize"}]
    memory = load_data(DataConfig.model_validate({"train": {"csv": "d.csv", "target": "label", "labels": "one_hot"},
                                                  "preprocessing": steps}), 0, tmp_path)
    streamed = load_data(DataConfig.model_validate({"train": {"stream": {"source": {"csv": "d.csv", "target": "label", "labels": "one_hot"}}},
                                                    "preprocessing": steps}), 0, tmp_path)
    assert streamed.stream.n_batches(8) is None  # CSV length is unknown
    xs, ys = zip(*[(x.copy(), y.copy()) for x, y, _ in streamed.stream.batches(0, 8)])
    np.testing.assert_allclose(np.concatenate(xs), memory.x, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate(ys), memory.y)
    for name, value in memory.preprocessing.to_arrays().items():
        np.testing.assert_allclose(streamed.preprocessing.to_arrays()[name], value, rtol=1e-6)


def test_stream_validation_split_holds_out_the_tail_and_fits_on_train_only(tmp_path):
    x = np.arange(100, dtype=np.float32)[:, None]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x)
    cfg = DataConfig.model_validate({"train": {"stream": {"source": {"npy": "x.npy", "targets": "y.npy"}}},
                                     "validation_split": 0.2, "preprocessing": [{"type": "min_max"}]})
    d = load_data(cfg, 0, tmp_path)
    assert d.stream.n_samples == 80 and d.validation_stream.n_samples == 20
    assert d.preprocessing.stats[0]["max"][0] == 79
    val_y = np.concatenate([y.copy() for _, y, _ in d.validation_stream.batches(0, 6)])
    np.testing.assert_array_equal(val_y[:, 0], np.arange(80, 100))
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,2\n")
    cfg = DataConfig.model_validate({"train": {"stream": {"source": {"csv": "d.csv", "target": "b"}}}, "validation_split": 0.5})
    with pytest.raises(DataError, match="validation_split needs a stream of known length"):
        load_data(cfg, 0, tmp_path)


def test_importing_data_does_not_import_numba():
    code = "import sys, trainctl.data, trainctl.data.config, trainctl.data.stream; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
