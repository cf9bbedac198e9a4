"""CSV, .npy, .npz and shard readers: selection, labels and their error messages."""

from pathlib import Path

import numpy as np
import pytest

from trainctl.data import DataConfig, load_data
from trainctl.errors import DataError

DATA = Path(__file__).resolve().parents[1] / "data"


def load(train: dict, base: Path, loss: str | None = None, **extra):
    return load_data(DataConfig.model_validate({"train": train, **extra}), 0, base, loss=loss)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def error_of(train: dict, base: Path, **extra) -> str:
    with pytest.raises(DataError) as info:
        load(train, base, **extra)
    return str(info.value)


def test_csv_string_labels_map_to_sorted_classes(tmp_path):
    write(tmp_path, "a,b,species\n1,2,cat\n3,4,dog\n\n5,6,cat\n7,8,bird\n")
    d = load({"csv": "t.csv", "target": "species"}, tmp_path)
    np.testing.assert_array_equal(d.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert d.class_names == ["bird", "cat", "dog"] and d.feature_names == ["a", "b"]
    np.testing.assert_array_equal(d.y.argmax(1), [1, 2, 1, 0])
    sparse = load({"csv": "t.csv", "target": "species"}, tmp_path, loss="sparse_categorical_crossentropy")
    np.testing.assert_array_equal(sparse.y[:, 0], [1, 2, 1, 0])
    given = load({"csv": "t.csv", "target": -1, "class_names": ["dog", "cat", "bird"], "labels": "sparse"}, tmp_path)
    np.testing.assert_array_equal(given.y[:, 0], [1, 0, 1, 2])


def test_csv_feature_selection_weights_and_numeric_targets(tmp_path):
    write(tmp_path, "a,b,c,w,t1,t2\n1,2,3,0.5,10,20\n4,5,6,1.5,30,40\n")
    d = load({"csv": "t.csv", "target": ["t1", "t2"], "features": ["c", 0], "sample_weight": "w"}, tmp_path)
    np.testing.assert_array_equal(d.x, [[3, 1], [6, 4]])
    np.testing.assert_array_equal(d.y, [[10, 20], [30, 40]])
    np.testing.assert_array_equal(d.sample_weight, [0.5, 1.5])
    assert d.label_encoding == "none" and d.class_names is None


def test_csv_numeric_class_column_one_hot_when_asked(tmp_path):
    write(tmp_path, "a,label\n0.5,2\n0.1,0\n0.3,1\n")
    d = load({"csv": "t.csv", "target": "label", "labels": "one_hot"}, tmp_path)
    np.testing.assert_array_equal(d.y, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert "is not a class index" in error_of({"csv": "t.csv", "target": "a", "labels": "one_hot"}, tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n1,2,3\n4,5\n", "t.csv:3: row 2: has 2 columns, expected 3"),
        ("a,b,c\n1,2,3\n4,5,6,7\n", "t.csv:3: row 2: has 4 columns, expected 3"),
        ("a,b,c\n1,2,3\n4,x,5\n", "t.csv:3: row 2, column 'b': 'x' is not a number (features must be numeric)"),
        ("a,b,c\n1,2,3\n\n4,5,oops\n", "t.csv:4: row 2, column 'c': 'oops' is not a number"),
        ("a,b,c\n1,,3\n", "t.csv:2: row 1, column 'b': empty cell"),
        ("a,b,c\n1,2,3\n4,nan,5\n", "t.csv:3: row 2, column 'b': value is NaN; data must be finite"),
        ("a,b,c\n1,2,inf\n", "t.csv:2: row 1, column 'c': value is inf; data must be finite"),
        ("a,b,c\n1,2,1e39\n", "t.csv:2: row 1, column 'c': value is inf; data must be finite"),
        ("a,b,c\n", "t.csv: no data rows"),
        ("", "t.csv: file is empty"),
    ],
)
def test_csv_errors_name_file_and_row(tmp_path, text, message):
    write(tmp_path, text)
    assert error_of({"csv": "t.csv", "target": "c"}, tmp_path) == message


def test_csv_row_numbers_continue_across_chunks(tmp_path, monkeypatch):
    from trainctl.data import readers

    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 64)
    rows = "".join(f"{i},{i}\n" for i in range(200)) + "7,bad\n"
    write(tmp_path, "a,b\n" + rows)
    assert error_of({"csv": "t.csv", "target": "b"}, tmp_path) == "t.csv:202: row 201, column 'b': 'bad' is not a number"
    write(tmp_path, "a,b\n" + "".join(f"{i},{i}\n" for i in range(200)))
    d = load({"csv": "t.csv", "target": "b"}, tmp_path)
    np.testing.assert_array_equal(d.x[:, 0], np.arange(200))


def test_csv_unknown_column_and_missing_file(tmp_path):
    write(tmp_path, "sepal,petal,species\n1,2,a\n")
    assert error_of({"csv": "t.csv", "target": "specie"}, tmp_path) == "t.csv: unknown column 'specie'; did you mean 'species'?"
    assert error_of({"csv": "t.csv", "target": "zzz"}, tmp_path) == "t.csv: unknown column 'zzz'; columns are: 'sepal', 'petal', 'species'"
    assert error_of({"csv": "t.csv", "target": 5}, tmp_path) == "t.csv: column index 5 out of range; the file has 3 columns"
    assert error_of({"csv": "nope.csv", "target": "x"}, tmp_path) == f"nope.csv: no such file (looked for {tmp_path / 'nope.csv'})"


def test_validation_labels_use_training_classes(tmp_path):
    write(tmp_path, "a,y\n1,cat\n2,dog\n")
    write(tmp_path, "a,y\n3,dog\n4,emu\n", "v.csv")
    message = error_of({"csv": "t.csv", "target": "y"}, tmp_path, validation={"csv": "v.csv", "target": "y"})
    assert message == "v.csv: row 2: class 'emu' is not one of the classes ['cat', 'dog']"
    write(tmp_path, "a,y\n3,dog\n4,cat\n", "v.csv")
    d = load({"csv": "t.csv", "target": "y"}, tmp_path, validation={"csv": "v.csv", "target": "y"})
    np.testing.assert_array_equal(d.y_val[:, 0], [1, 0])  # 2 classes → one 0/1 column


def test_npy_is_memory_mapped_not_read(tmp_path):
    x = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(1000) % 3)
    d = load({"npy": "x.npy", "targets": "y.npy"}, tmp_path, loss="categorical_crossentropy")
    assert isinstance(d.x, np.memmap) or isinstance(d.x.base, np.memmap)
    np.testing.assert_array_equal(d.x, x)
    assert d.y.shape == (1000, 3)
    v = load({"npy": "x.npy", "targets": "y.npy"}, tmp_path, validation_split=0.25)
    assert len(v.x) == 750 and isinstance(v.x_val.base, np.memmap)


def test_npy_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1.0, np.nan]], dtype=np.float32))
    assert error_of({"npy": "x.npy"}, tmp_path) == "x.npy: row 1: value is NaN; data must be finite"
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert error_of({"npy": "o.npy"}, tmp_path) == "o.npy: holds Python objects; only numeric arrays can be read (no pickle)"
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.zeros(3))
    assert error_of({"npy": "x.npy", "targets": "y.npy"}, tmp_path) == "y.npy: has 3 rows but x.npy has 4"


def test_npz_by_key(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", images=np.ones((5, 2, 2), np.uint8), labels=np.arange(5))
    d = load({"npz": "d.npz", "x_key": "images", "y_key": "labels"}, tmp_path)
    assert d.x.shape == (5, 2, 2) and d.x.dtype == np.float32 and d.y.shape == (5, 1)
    assert error_of({"npz": "d.npz", "x_key": "image", "y_key": "labels"}, tmp_path) == "d.npz: no array 'image'; did you mean 'images'?"


def test_shards_of_csv_and_npy(tmp_path):
    shards = tmp_path / "parts"
    shards.mkdir()
    (shards / "b.csv").write_text("f,y\n3,1\n4,0\n")
    (shards / "a.csv").write_text("f,y\n1,0\n2,1\n")
    d = load({"shards": "parts", "target": "y"}, tmp_path)
    np.testing.assert_array_equal(d.x[:, 0], [1, 2, 3, 4])
    (shards / "a.csv").write_text("f,g,y\n1,0,0\n")
    assert error_of({"shards": "parts", "target": "y"}, tmp_path) == "parts/b.csv: columns differ from parts/a.csv"
    npy = tmp_path / "np"
    npy.mkdir()
    np.save(npy / "0.npy", np.array([[1, 2, 0], [3, 4, 1]], np.float32))
    np.save(npy / "1.npy", np.array([[5, 6, 1]], np.float32))
    d = load({"shards": "np", "target": -1, "labels": "sparse"}, tmp_path)
    np.testing.assert_array_equal(d.x, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(d.y[:, 0], [0, 1, 1])


@pytest.mark.parametrize(
    "train, shape, k",
    [
        ({"csv": "iris.csv", "target": "species"}, (150, 4), 3),
        ({"csv": "wine.csv", "target": "cultivar"}, (178, 13), 3),
        ({"csv": "breast_cancer.csv", "target": "diagnosis"}, (569, 30), 2),
        ({"csv": "digits.csv", "target": "digit", "labels": "one_hot"}, (1797, 64), 10),
        ({"npz": "mnist_10k.npz"}, (10000, 28, 28), 10),
    ],
)
def test_shipped_datasets_load(train, shape, k):
    d = load(train, DATA, loss="categorical_crossentropy")
    assert d.x.shape == shape and d.y.shape == (shape[0], k)
    assert d.y.sum(0).min() > shape[0] / k / 3  # every class present
