"""Run directory artifacts: atomic writes, validated safetensors, history, checkpoints."""

import errno
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from trainctl.runs import atomic
from trainctl.runs.checkpoints import CheckpointSyncer, CheckpointWarning
from trainctl.runs.rundir import RunDir
from trainctl.runs.tensors import arrays_from_bytes, arrays_to_bytes, load_weights, load_weights_with_metadata, save_weights
from trainctl.runs.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, config_hash, read_json
from trainctl.errors import ArtifactError, TrainctlError


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def _load_error(path, *expected) -> str:
    """The one-line ArtifactError `load_weights(path, *expected)` must raise."""
    with pytest.raises(ArtifactError) as exc_info:
        load_weights(path, *expected)
    return _one_line(exc_info)


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    """A hand-made safetensors file: u64 little-endian header length, JSON header, data."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _weights():
    rng = np.random.default_rng(0)
    return {
        "dense_Dense1/kernel": rng.standard_normal((784, 32)).astype(np.float32),
        "dense_Dense1/bias": np.zeros(32, np.float32),
        "dense_Dense2/kernel": rng.standard_normal((32, 10)).astype(np.float32),
    }


def _expected(arrays):
    return {k: (v.shape, v.dtype) for k, v in arrays.items()}


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_helpers_write_and_replace(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_bytes(tmp_path / "a.bin", b"new")
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    atomic_write_json(tmp_path / "j.json", {"x": np.float32(0.5), "a": np.arange(3), "n": float("nan")})
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    loaded = read_json(tmp_path / "j.json")
    assert loaded["x"] == 0.5 and loaded["a"] == [0, 1, 2] and np.isnan(loaded["n"])
    assert _leftovers(tmp_path) == []


def test_atomic_write_uses_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize("writer", ["bytes", "text", "json", "weights"])
def test_disk_full_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch, writer):
    target = tmp_path / "out.dat"
    target.write_bytes(b"previous contents")
    monkeypatch.setattr(atomic.os, "write", _enospc)
    with pytest.raises(ArtifactError) as exc_info:
        if writer == "bytes":
            atomic_write_bytes(target, b"x" * 100)
        elif writer == "text":
            atomic_write_text(target, "text")
        elif writer == "json":
            atomic_write_json(target, {"a": 1})
        else:
            save_weights(target, _weights())
    msg = _one_line(exc_info)
    assert str(target) in msg and "No space left on device" in msg
    assert target.read_bytes() == b"previous contents"
    assert _leftovers(tmp_path) == []


def test_disk_full_with_bare_errno_oserror(tmp_path, monkeypatch):
    """OSError(ENOSPC) built with only the number still gives a readable reason."""

    def bare(*args):
        raise OSError(errno.ENOSPC)

    monkeypatch.setattr(atomic.os, "write", bare)
    with pytest.raises(ArtifactError, match="No space left on device"):
        atomic_write_bytes(tmp_path / "f", b"abc")
    assert list(tmp_path.iterdir()) == []


def test_short_writes_are_continued(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(atomic.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    atomic_write_bytes(tmp_path / "f", b"0123456789abcdef")
    assert (tmp_path / "f").read_bytes() == b"0123456789abcdef"


def test_fsync_failure_and_replace_failure_leave_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
        with pytest.raises(ArtifactError, match="I/O error"):
            atomic_write_bytes(target, b"new")
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", _enospc)
        with pytest.raises(ArtifactError, match=str(target)):
            atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_read_only_dir_via_monkeypatch(tmp_path, monkeypatch, code):
    real_open = os.open

    def refuse_create(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"keep me")
    monkeypatch.setattr(atomic.os, "open", refuse_create)
    with pytest.raises(ArtifactError) as exc_info:
        save_weights(target, _weights())
    msg = _one_line(exc_info)
    assert str(target) in msg and os.strerror(code) in msg
    assert target.read_bytes() == b"keep me"


def test_read_only_dir_via_chmod(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f.txt").write_text("old")
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("chmod does not restrict this user (root); covered by the monkeypatch test")
        with pytest.raises(ArtifactError, match="Permission denied") as exc_info:
            atomic_write_text(ro / "f.txt", "new")
        assert str(ro / "f.txt") in _one_line(exc_info)
        assert (ro / "f.txt").read_text() == "old"
        assert sorted(p.name for p in ro.iterdir()) == ["f.txt"]
    finally:
        ro.chmod(0o755)


def test_artifact_error_is_a_trainctl_error():
    assert issubclass(ArtifactError, TrainctlError)


def test_unserialisable_json_is_a_bug_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_json_reports_file_line_and_col(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    with pytest.raises(ArtifactError) as exc_info:
        read_json(path)
    assert _one_line(exc_info).startswith(f"{path}:3:8: invalid JSON")
    with pytest.raises(ArtifactError, match="file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ArtifactError, match="not a UTF-8"):
        read_json(tmp_path / "bin.json")


# --------------------------------------------------------------------------- weights


def test_weights_round_trip_with_metadata(tmp_path):
    arrays = _weights()
    arrays["iterations"] = np.array(12, dtype=np.int64)  # 0-d stays 0-d
    arrays["strided"] = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]  # non-contiguous
    arrays["big_endian"] = np.arange(5, dtype=">f4")
    arrays["mask"] = np.array([True, False])
    arrays["empty"] = np.zeros((0, 3), np.float32)
    path = tmp_path / "w.safetensors"
    save_weights(path, arrays, {"optimizer": "adam"})
    loaded, metadata = load_weights_with_metadata(path)
    assert metadata == {"optimizer": "adam"}
    assert set(loaded) == set(arrays)
    for name, arr in arrays.items():
        assert loaded[name].shape == arr.shape
        assert loaded[name].dtype == arr.dtype.newbyteorder("=")
        np.testing.assert_array_equal(loaded[name], arr)
        assert loaded[name].flags.writeable
    expected = {k: (v.shape, v.dtype.newbyteorder("=")) for k, v in arrays.items()}
    assert set(load_weights(path, expected)) == set(arrays)
    assert _leftovers(tmp_path) == []


def test_save_refuses_unstorable_dtype_and_bad_metadata(tmp_path):
    with pytest.raises(ValueError, match="obj"):
        save_weights(tmp_path / "w", {"obj": np.array([object()])})
    with pytest.raises(ValueError, match="metadata"):
        save_weights(tmp_path / "w", {"a": np.zeros(1)}, {"n": 1})
    assert not (tmp_path / "w").exists()


def test_load_missing_file(tmp_path):
    assert "nope.safetensors: file not found" in _load_error(tmp_path / "nope.safetensors")


def test_load_pickle_renamed_to_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    # The one permitted use of pickle: to produce bad input bytes for this test.
    path.write_bytes(pickle.dumps({"dense_Dense1/kernel": np.ones((3, 3))}))
    msg = _load_error(path)
    assert str(path) in msg and "not a safetensors file" in msg


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty file"),
        (b"\x01\x02\x03", "too short"),
        (np.random.default_rng(1).bytes(4096), "not a safetensors file"),
        (struct.pack("<Q", 1) + b"{", "too small"),
        (struct.pack("<Q", 4) + b"abcd", "does not start with"),
    ],
)
def test_load_garbage(tmp_path, content, fragment):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=fragment) as exc_info:
        load_weights(path)
    assert str(path) in _one_line(exc_info)


def test_load_absurd_header_length_is_refused_before_the_library(tmp_path, monkeypatch):
    import safetensors.numpy

    def must_not_run(data):
        raise AssertionError("safetensors.numpy.load called on an unvalidated file")

    monkeypatch.setattr(safetensors.numpy, "load", must_not_run)
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b'{"a":1}' + b"\x00" * 64)
    msg = _load_error(path)
    assert "1000000000000" in msg and str(path) in msg


def test_load_truncated_file_at_every_kind_of_cut(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, _weights())
    full = path.read_bytes()
    header_len = struct.unpack("<Q", full[:8])[0]
    for cut in (4, 8, 8 + header_len // 2, 8 + header_len, 8 + header_len + 100, len(full) - 1):
        path.write_bytes(full[:cut])
        msg = _load_error(path)
        assert str(path) in msg
        if cut > 8 + header_len:
            assert "truncated" in msg


def test_load_trailing_garbage(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"a": np.ones(3, np.float32)})
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(ArtifactError, match="4 unexpected bytes"):
        load_weights(path)


def test_load_invalid_header_json(tmp_path):
    path = tmp_path / "w.safetensors"
    raw = b'{"a": {"dtype": "F32",'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ArtifactError, match="invalid safetensors header JSON at line 1") as exc_info:
        load_weights(path)
    assert str(path) in _one_line(exc_info)


def test_load_header_not_object_and_bad_entries(tmp_path):
    path = tmp_path / "w.safetensors"
    cases = [
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", "bad shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4, "needs 8"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8, "expected 0"),
        ({"a": "x"}, b"", "not an object"),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
    ]
    for header, data, fragment in cases:
        path.write_bytes(_safetensors_bytes(header, data))
        with pytest.raises(ArtifactError, match=fragment):
            load_weights(path)


def test_load_unsupported_dtype(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(_safetensors_bytes({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4))
    msg = _load_error(path)
    assert "w: unsupported dtype 'BF16'" in msg and str(path) in msg


def test_hand_made_file_is_read_like_the_library_writes_it(tmp_path):
    path = tmp_path / "w.safetensors"
    values = np.array([1.5, -2.0], np.float32)
    path.write_bytes(_safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, values.tobytes()))
    np.testing.assert_array_equal(load_weights(path)["w"], values)


def test_load_shape_mismatch_message(tmp_path):
    path = tmp_path / "weights.safetensors"
    arrays = _weights()
    arrays["dense_Dense1/kernel"] = np.zeros((784, 16), np.float32)
    save_weights(path, arrays)
    expected = _expected(_weights())
    assert "dense_Dense1/kernel: expected shape [784,32], file has [784,16]" in _load_error(path, expected)


def test_load_missing_unexpected_and_dtype_mismatch_reported_together(tmp_path):
    path = tmp_path / "weights.safetensors"
    arrays = _weights()
    del arrays["dense_Dense1/bias"]
    arrays["extra/thing"] = np.zeros(2, np.float32)
    arrays["dense_Dense2/kernel"] = arrays["dense_Dense2/kernel"].astype(np.float64)
    save_weights(path, arrays)
    msg = _load_error(path, _expected(_weights()))
    assert "missing dense_Dense1/bias" in msg
    assert "unexpected extra/thing" in msg
    assert "dense_Dense2/kernel: expected dtype float32, file has float64" in msg
    assert str(path) in msg


def test_arrays_bytes_helpers_round_trip_and_validate():
    arrays = _weights()
    data = arrays_to_bytes(arrays, {"k": "v"})
    back = arrays_from_bytes(data, _expected(arrays))
    for name in arrays:
        np.testing.assert_array_equal(back[name], arrays[name])
    with pytest.raises(ArtifactError, match="checkpoint weights: truncated"):
        arrays_from_bytes(data[:-10], source="checkpoint weights")


# --------------------------------------------------------------------------- run directory


def test_create_default_path_and_suffixes(tmp_path):
    now = datetime(2024, 5, 17, 13, 45, 9)
    runs = [RunDir.create(tmp_path / "runs", "tfjs-mlp", None, now=now) for _ in range(3)]
    names = [r.path.name for r in runs]
    assert names == ["20240517-134509", "20240517-134509-1", "20240517-134509-2"]
    assert all(r.path.parent == tmp_path / "runs" / "tfjs-mlp" and r.path.is_dir() for r in runs)


def test_create_uses_current_time(tmp_path):
    run = RunDir.create(tmp_path, "x", None)
    datetime.strptime(run.path.name[:15], "%Y%m%d-%H%M%S")


def test_create_explicit_out(tmp_path):
    out = tmp_path / "deep" / "out"
    run = RunDir.create(tmp_path / "runs", "ignored", out)
    assert run.path == out and out.is_dir()
    assert not (tmp_path / "runs").exists()
    RunDir.create(tmp_path / "runs", "ignored", out)  # still empty: fine
    (out / "config.yaml").write_text("a: 1\n")
    with pytest.raises(ArtifactError, match="not empty"):
        RunDir.create(tmp_path / "runs", "ignored", out)


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_create_refuses_bad_name(tmp_path, name):
    with pytest.raises(ArtifactError, match="invalid run name"):
        RunDir.create(tmp_path, name, None)


def test_open_requires_a_run_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        RunDir.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        RunDir.open(tmp_path / "file")
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    with pytest.raises(ArtifactError) as exc_info:
        RunDir.open(run.path)
    assert "missing config.yaml, model.json, weights.safetensors" in _one_line(exc_info)
    run.write_config("name: r\n")
    run.write_model({"layers": []})
    with pytest.raises(ArtifactError, match="missing weights.safetensors"):
        RunDir.open(run.path)
    assert RunDir.open(run.path, require_weights=False).path == run.path
    run.write_weights(_weights())
    assert RunDir.open(run.path).path == run.path


def test_full_run_directory_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "runs", "mlp", None)
    config_text = "name: mlp\nseed: 0\n"
    model = {"class_name": "Sequential", "layers": [{"type": "dense", "units": 32}]}
    weights = _weights()
    slots = {"dense_Dense1/kernel/m": np.ones((784, 32), np.float32), "iterations": np.array(40, np.int64)}
    state = {"epoch": 2, "step_in_epoch": 0, "global_step": 40, "rng": {"state": 2**100, "inc": 7}}
    run.write_config(config_text)
    run.write_model(model)
    run.write_weights(weights)
    run.write_optimizer(slots, {"type": "adam"})
    run.write_state(state)
    run.write_metrics({"loss": np.float32(0.25), "accuracy": 0.9})
    run.write_preprocessing({"mean": np.zeros(784, np.float32), "std": np.ones(784, np.float32)})

    again = RunDir.open(run.path)
    assert again.read_config_text() == config_text
    assert again.read_model() == model
    loaded = again.read_weights(_expected(weights))
    np.testing.assert_array_equal(loaded["dense_Dense1/kernel"], weights["dense_Dense1/kernel"])
    opt_arrays, opt_meta = again.read_optimizer()
    assert opt_meta == {"type": "adam"} and int(opt_arrays["iterations"]) == 40
    assert again.read_state() == {**state, "config_hash": config_hash(config_text)}
    assert again.read_metrics() == {"loss": 0.25, "accuracy": 0.9}
    assert set(again.read_preprocessing()) == {"mean", "std"}
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        [
            "config.yaml",
            "model.json",
            "weights.safetensors",
            "optimizer.safetensors",
            "state.json",
            "metrics.json",
            "preprocessing.safetensors",
        ]
    )


def test_optional_and_absent_files(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    assert run.read_preprocessing() is None
    assert run.read_history() == []
    with pytest.raises(ArtifactError, match="metrics.json: file not found"):
        run.read_metrics()
    with pytest.raises(ArtifactError, match="config.yaml: file not found"):
        run.write_state({"epoch": 0})


def test_damaged_json_files_name_file_and_position(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.write_config("a: 1\n")
    (run.path / "model.json").write_text('{"layers": [1, 2,]}')
    with pytest.raises(ArtifactError) as exc_info:
        run.read_model()
    assert _one_line(exc_info).startswith(f"{run.path / 'model.json'}:1:")
    (run.path / "model.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="expected a JSON object"):
        run.read_model()
    (run.path / "state.json").write_text('{"epoch": 1,\n"config_hash": }')
    with pytest.raises(ArtifactError, match=r"state.json:2:\d+: invalid JSON"):
        run.read_state()


def test_state_written_for_another_config_is_refused(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.write_config("seed: 0\n")
    run.write_state({"epoch": 3})
    run.write_config("seed: 1\n")
    with pytest.raises(ArtifactError, match="different config"):
        run.read_state()
    assert run.read_state(verify_config=False)["epoch"] == 3


def test_history_union_of_columns_in_first_seen_order(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.append_history({"epoch": 0, "loss": 0.5, "acc": np.float32(0.25)})
    run.append_history({"epoch": 1, "loss": 0.25, "val_loss": 0.75, "acc": 0.5})
    run.append_history({"epoch": 2, "lr": 1e-3, "loss": float("nan")})
    header = (run.path / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,acc,val_loss,lr"
    rows = run.read_history()
    assert rows[0] == {"epoch": 0, "loss": 0.5, "acc": 0.25}
    assert rows[1] == {"epoch": 1, "loss": 0.25, "val_loss": 0.75, "acc": 0.5}
    assert rows[2]["lr"] == 1e-3 and np.isnan(rows[2]["loss"]) and set(rows[2]) == {"epoch", "lr", "loss"}
    assert isinstance(rows[0]["epoch"], int)
    assert _leftovers(run.path) == []


def test_history_floats_round_trip_exactly(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    values = np.random.default_rng(3).standard_normal(5)
    for epoch, v in enumerate(values):
        run.append_history({"epoch": epoch, "loss": float(v)})
    assert [r["loss"] for r in run.read_history()] == [float(v) for v in values]


def test_history_rerun_after_resume_supersedes_later_rows(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    for epoch in range(4):
        run.append_history({"epoch": epoch, "loss": float(epoch)})
    run.append_history({"epoch": 2, "loss": 20.0})  # resumed from the epoch-1 checkpoint
    assert [(r["epoch"], r["loss"]) for r in run.read_history()] == [(0, 0.0), (1, 1.0), (2, 20.0)]


def test_history_bad_rows_and_damaged_file(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    with pytest.raises(ValueError, match="epoch"):
        run.append_history({"loss": 1.0})
    with pytest.raises(TypeError, match="expected a number"):
        run.append_history({"epoch": 0, "loss": "high"})
    assert not (run.path / "history.csv").exists()
    (run.path / "history.csv").write_text("epoch,loss\n0,0.5\n1\n")
    with pytest.raises(ArtifactError, match=r"history.csv:3: expected 2 fields, found 1"):
        run.read_history()
    (run.path / "history.csv").write_text("epoch,loss\n0,abc\n")
    with pytest.raises(ArtifactError, match=r"history.csv:2: loss: not a number"):
        run.read_history()
    (run.path / "history.csv").write_text("loss,epoch\n0.5,0\n")
    with pytest.raises(ArtifactError, match=r"history.csv:1: bad header"):
        run.read_history()


def test_history_disk_full_keeps_previous_rows(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.append_history({"epoch": 0, "loss": 1.0})
    before = (run.path / "history.csv").read_bytes()
    monkeypatch.setattr(atomic.os, "write", _enospc)
    with pytest.raises(ArtifactError, match="history.csv"):
        run.append_history({"epoch": 1, "loss": 0.5})
    assert (run.path / "history.csv").read_bytes() == before
    assert _leftovers(run.path) == []


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_files(step: int) -> dict[str, bytes]:
    weights = {k: v + step for k, v in _weights().items()}
    return {
        "weights.safetensors": arrays_to_bytes(weights),
        "optimizer.safetensors": arrays_to_bytes({"iterations": np.array(step, np.int64)}, {"type": "sgd"}),
        "state.json": json.dumps({"global_step": step}).encode(),
    }


def test_checkpoint_round_trip_with_array_helpers(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    assert run.latest_checkpoint() is None
    path = run.save_checkpoint("epoch-1", _checkpoint_files(1), keep_last=3)
    assert path.name == "00000001-epoch-1"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["sequence"] == 1 and manifest["tag"] == "epoch-1"
    assert set(manifest["files"]) == {"weights.safetensors", "optimizer.safetensors", "state.json"}
    tag, files = run.latest_checkpoint()
    assert tag == "epoch-1" and files == _checkpoint_files(1)
    weights = arrays_from_bytes(files["weights.safetensors"], _expected(_weights()))
    np.testing.assert_array_equal(weights["dense_Dense1/bias"], np.ones(32, np.float32))
    assert _leftovers(run.checkpoints_path) == []


def test_latest_is_by_sequence_not_mtime(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.save_checkpoint("b", _checkpoint_files(1), keep_last=5)
    run.save_checkpoint("a", _checkpoint_files(2), keep_last=5)  # tag sorts first, but newer
    old, new = [p for _, _, p in run.list_checkpoints()]
    os.utime(old, (2_000_000_000, 2_000_000_000))
    os.utime(new, (1_000_000_000, 1_000_000_000))
    tag, files = run.latest_checkpoint()
    assert tag == "a" and files == _checkpoint_files(2)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "delete_manifest", "bad_manifest"])
def test_damaged_newest_checkpoint_falls_back_with_warning(tmp_path, damage):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.save_checkpoint("step-1", _checkpoint_files(1), keep_last=3)
    newest = run.save_checkpoint("step-2", _checkpoint_files(2), keep_last=3)
    target = newest / "weights.safetensors"
    if damage == "flip_byte":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-7])
    elif damage == "delete_file":
        target.unlink()
    elif damage == "delete_manifest":
        (newest / "manifest.json").unlink()
    else:
        (newest / "manifest.json").write_text('{"files": ')
    with pytest.warns(CheckpointWarning, match=str(newest)):
        tag, files = run.latest_checkpoint()
    assert tag == "step-1" and files == _checkpoint_files(1)


def test_all_checkpoints_damaged_gives_none_and_warns_for_each(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    paths = [run.save_checkpoint(f"s{i}", {"f.bin": b"x"}, keep_last=5) for i in range(2)]
    for p in paths:
        (p / "f.bin").write_bytes(b"y")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run.latest_checkpoint() is None
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(messages) == 2 and str(paths[1]) in messages[0] and str(paths[0]) in messages[1]


def test_keep_last_prunes_oldest_after_new_one_is_in_place(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    for step in range(1, 6):
        run.save_checkpoint(f"step-{step}", {"s": str(step).encode()}, keep_last=2)
    assert [(seq, tag) for seq, tag, _ in run.list_checkpoints()] == [(4, "step-4"), (5, "step-5")]
    assert sorted(p.name for p in run.checkpoints_path.iterdir()) == ["00000004-step-4", "00000005-step-5"]
    run.save_checkpoint("step-6", {"s": b"6"}, keep_last=1)
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-6"]
    assert run.latest_checkpoint() == ("step-6", {"s": b"6"})


def test_failed_save_keeps_older_checkpoints_and_leaves_no_temp(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.save_checkpoint("step-1", {"s": b"1"}, keep_last=1)
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "write", _enospc)
        with pytest.raises(ArtifactError) as exc_info:
            run.save_checkpoint("step-2", {"s": b"2"}, keep_last=1)
    msg = _one_line(exc_info)
    assert "00000002-step-2" in msg and "No space left on device" in msg
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "rename", _enospc)  # the final rename into place fails
        with pytest.raises(ArtifactError, match="cannot write checkpoint"):
            run.save_checkpoint("step-2", {"s": b"2"}, keep_last=1)
    assert sorted(p.name for p in run.checkpoints_path.iterdir()) == ["00000001-step-1"]
    assert run.latest_checkpoint() == ("step-1", {"s": b"1"})


def _fsynced_paths(monkeypatch) -> list[str]:
    """Record the path of every fsync (files and directories) from now on."""
    synced, fsync = [], os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return synced


def test_a_syncer_makes_the_newest_checkpoint_durable_then_prunes(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    syncer = CheckpointSyncer(run)
    synced = _fsynced_paths(monkeypatch)
    paths = [run.save_checkpoint(f"step-{step}", {"s": str(step).encode(), "t": b"x"}, keep_last=2, syncer=syncer)
             for step in range(1, 6)]
    syncer.close()
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-4", "step-5"]
    assert _leftovers(run.checkpoints_path) == []
    newest = paths[-1]
    for name in ("s", "t", "manifest.json"):  # the newest is durable: files, its dir, the dir it is in
        assert str(newest / name) in synced, name
    assert str(newest) in synced and str(run.checkpoints_path) in synced
    assert run.latest_checkpoint() == ("step-5", {"s": b"5", "t": b"x"})


def test_a_syncer_keeps_the_last_durable_checkpoint_until_the_next_one_is(tmp_path, monkeypatch):
    """A power cut while the newest is being synced must find the one before it: the syncer
    prunes only up to the checkpoint it has made durable."""
    import queue

    from trainctl.runs import checkpoints

    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    syncer = CheckpointSyncer(run)
    run.save_checkpoint("step-1", {"s": b"1"}, keep_last=1, syncer=syncer)
    syncer.close()
    entered, go, sync = queue.Queue(), queue.Queue(), checkpoints._sync_checkpoint

    def held_sync(path):  # each sync waits for the test's go
        entered.put(path.name)
        go.get(timeout=10)
        sync(path)

    monkeypatch.setattr(checkpoints, "_sync_checkpoint", held_sync)
    run.save_checkpoint("step-2", {"s": b"2"}, keep_last=1, syncer=syncer)
    assert entered.get(timeout=10) == "00000002-step-2"
    run.save_checkpoint("step-3", {"s": b"3"}, keep_last=1, syncer=syncer)  # published while step-2 syncs
    go.put(None)  # step-2 is durable now and prunes; step-3's sync starts and is held
    assert entered.get(timeout=10) == "00000003-step-3"
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-2", "step-3"]
    go.put(None)
    syncer.close()
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-3"]


def test_a_failed_sync_is_raised_with_the_checkpoint_named(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    syncer = CheckpointSyncer(run)
    run.save_checkpoint("step-1", {"s": b"1"}, keep_last=1, syncer=syncer)
    syncer.close()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    path = run.save_checkpoint("step-2", {"s": b"2"}, keep_last=1, syncer=syncer)
    with pytest.raises(ArtifactError) as exc_info:
        syncer.close()
    assert _one_line(exc_info) == f"cannot make checkpoint {path} durable: I/O error"
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-1", "step-2"]  # nothing pruned


def test_training_waits_for_its_last_checkpoint_to_be_durable(tmp_path, monkeypatch):
    """Through the public API: when train_from_config returns, the run's last checkpoint has
    been fsynced (by the syncer's thread) and the older ones pruned."""
    from trainctl import load_config, train_from_config

    config = tmp_path / "c.yaml"
    config.write_text(
        "name: durable\nmodel:\n  layers:\n    - {type: dense, units: 1, input_shape: [1]}\n"
        "optimizer: sgd\nloss: mean_squared_error\n"
        "data:\n  train: {generator: linear, n_samples: 64}\n"
        "fit: {epochs: 4, batch_size: 16}\n")
    import time

    from trainctl.runs import checkpoints

    synced, sync = _fsynced_paths(monkeypatch), checkpoints._sync_checkpoint
    monkeypatch.setattr(checkpoints, "_sync_checkpoint", lambda path: (time.sleep(0.1), sync(path)))  # a slow disk
    train_from_config(load_config(config), out=tmp_path / "run")
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["00000005-epoch-0004"]  # a finished run keeps its last
    for name in os.listdir(checkpoints[-1]):
        assert str(checkpoints[-1] / name) in synced, name
    assert str(checkpoints[-1]) in synced


def test_leftover_temp_dirs_are_ignored_then_cleaned(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.save_checkpoint("step-1", {"s": b"1"}, keep_last=3)
    # A save killed before its rename: a higher sequence, half written, no manifest.
    crashed = run.checkpoints_path / ".tmp-00000002-step-2.abcdef"
    crashed.mkdir()
    (crashed / "s").write_bytes(b"2 partial")
    dying = run.checkpoints_path / ".del-00000000-step-0.123456"
    dying.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a temp dir is not a damaged checkpoint
        assert run.latest_checkpoint() == ("step-1", {"s": b"1"})
    assert [tag for _, tag, _ in run.list_checkpoints()] == ["step-1"]
    run.save_checkpoint("step-2", {"s": b"2"}, keep_last=3)
    assert sorted(p.name for p in run.checkpoints_path.iterdir()) == ["00000001-step-1", "00000002-step-2"]
    assert run.latest_checkpoint() == ("step-2", {"s": b"2"})


def test_sequence_continues_past_a_damaged_newest(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    run.save_checkpoint("a", {"s": b"1"}, keep_last=5)
    bad = run.save_checkpoint("b", {"s": b"2"}, keep_last=5)
    (bad / "s").write_bytes(b"X")
    newest = run.save_checkpoint("c", {"s": b"3"}, keep_last=5)
    assert newest.name == "00000003-c"
    assert run.latest_checkpoint() == ("c", {"s": b"3"})


def test_checkpoint_argument_checks(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run")
    with pytest.raises(ValueError, match="tag"):
        run.save_checkpoint("../escape", {"s": b""}, keep_last=1)
    with pytest.raises(ValueError, match="file name"):
        run.save_checkpoint("ok", {"sub/dir": b""}, keep_last=1)
    with pytest.raises(ValueError, match="reserved"):
        run.save_checkpoint("ok", {"manifest.json": b""}, keep_last=1)
    with pytest.raises(ValueError, match="keep_last"):
        run.save_checkpoint("ok", {"s": b""}, keep_last=0)
    assert run.list_checkpoints() == []


# --------------------------------------------------------------------------- module rules


def test_module_does_not_import_numba_or_pickle():
    code = "import sys, trainctl.runs.rundir; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for name in ("atomic", "tensors", "history", "checkpoints", "rundir", "files"):
        path = Path(atomic.__file__).with_name(f"{name}.py")
        source = path.read_text()
        assert "import pickle" not in source and "allow_pickle" not in source and "numba" not in source, path
