"""Tabular data through the CLI (issue 14, items 6-11): the pyarrow CSV reader, categorical
columns and fills saved with the run, target scaling undone by predict, class_weight by
name / balanced, validate opening the data, predict's width check and its table = CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import PLAIN_ENV, error_lines, fails, ok, table_rows, write
from trainctl.data import DataConfig, load_data
from trainctl.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
HOUSES = ROOT / "data" / "houses.csv"


def load(train: dict, base: Path, loss: str | None = None, **extra):
    return load_data(DataConfig.model_validate({"train": train, **extra}), 0, base, loss=loss)


# ---------------------------------------------------------------- the CSV reader (pyarrow)


def test_quoted_fields_encodings_and_type_inference(tmp_path):
    text = 'name,size,kind,label\n"Smith, J.",1.5,"a ""big"" one",cat\n"Lee",2,small,dog\n'
    (tmp_path / "q.csv").write_text(text, encoding="latin-1")
    d = load({"csv": "q.csv", "target": "label", "features": ["size"]}, tmp_path)
    np.testing.assert_array_equal(d.x[:, 0], [1.5, 2.0])
    assert d.class_names == ["cat", "dog"]
    (tmp_path / "l.csv").write_bytes("caf\xe9,y\n1,0\n2,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"l\.csv(:\d+)?: not UTF-8 text .*set encoding"):
        load({"csv": "l.csv", "target": "y"}, tmp_path)
    d = load({"csv": "l.csv", "target": "y", "encoding": "latin-1"}, tmp_path)
    assert d.feature_names == ["café"]
    # a quoted field may hold the delimiter and a newline; rows are still counted right
    (tmp_path / "n.csv").write_text('a,b,y\n1,"x\ny",0\n2,z,oops\n')
    with pytest.raises(DataError, match=r"n\.csv:4: row 2, column 'y': 'oops' is not a number"):
        load({"csv": "n.csv", "target": "y", "features": ["a"], "labels": "none"}, tmp_path)


def test_missing_cells_are_an_error_naming_the_row_unless_filled(tmp_path):
    write(tmp_path / "m.csv", "a,b,y\n1,2,0\n3,NA,1\n5,,1\n7,8,0\n")
    with pytest.raises(DataError, match=r"m\.csv:3: row 2, column 'b': missing value 'NA' \(set fill"):
        load({"csv": "m.csv", "target": "y"}, tmp_path)
    mean = load({"csv": "m.csv", "target": "y", "fill": "mean"}, tmp_path)
    np.testing.assert_allclose(mean.x[:, 1], [2, 5, 5, 8])
    median = load({"csv": "m.csv", "target": "y", "columns": {"b": {"fill": "median"}}}, tmp_path,
                  validation_split=0.25)  # statistics from the first 3 rows only: median of [2] = 2
    np.testing.assert_allclose(median.x[:, 1], [2, 2, 2])
    np.testing.assert_allclose(median.x_val[:, 1], [8])
    const = load({"csv": "m.csv", "target": "y", "columns": {"b": {"fill": "constant", "value": -1}}}, tmp_path)
    np.testing.assert_allclose(const.x[:, 1], [2, -1, -1, 8])


def test_categorical_columns_one_hot_and_index(tmp_path):
    write(tmp_path / "c.csv", "color,size,y\nred,1,0\nblue,2,1\nred,3,0\n,4,1\ngreen,5,1\n")
    d = load({"csv": "c.csv", "target": "y", "labels": "none",
              "columns": {"color": {"type": "categorical", "fill": "most_frequent"}}}, tmp_path, validation_split=0.2)
    # vocabulary from the 4 training rows, by frequency: [UNK], red (3 with the fill), blue
    assert d.preprocessing.tabular.feature_names == ["color=[UNK]", "color=red", "color=blue", "size"]
    np.testing.assert_array_equal(d.x, [[0, 1, 0, 1], [0, 0, 1, 2], [0, 1, 0, 3], [0, 1, 0, 4]])
    np.testing.assert_array_equal(d.x_val, [[1, 0, 0, 5]])  # green was not in the training split: [UNK]
    index = load({"csv": "c.csv", "target": "y", "labels": "none", "fill": "mean",
                  "columns": {"color": {"type": "categorical", "encoding": "index", "fill": "constant", "value": "blue"}}},
                 tmp_path)
    np.testing.assert_array_equal(index.x[:, 0], [1, 2, 1, 2, 3])  # red 2×, blue 2× (sorted on ties), green
    with pytest.raises(DataError, match=r"c\.csv:5: row 4, column 'color': empty cell"):
        load({"csv": "c.csv", "target": "y", "columns": {"color": "categorical"}}, tmp_path)
    with pytest.raises(DataError, match="columns: 'colour' is not a feature column; did you mean 'color'"):
        load({"csv": "c.csv", "target": "y", "columns": {"colour": "categorical"}}, tmp_path)


# ---------------------------------------------------------------- house prices end to end


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    work = tmp_path_factory.mktemp("houses")
    out = work / "run"
    result = ok(["train", ROOT / "configs" / "houses.yaml", "--out", out, "--set", "fit.epochs=25", "-q"])
    return work, out, result


def test_house_prices_train_saves_the_fitted_columns(houses):
    work, out, _ = houses
    info = json.loads((out / "data.json").read_text())
    columns = {c["name"]: c for c in info["tabular"]["columns"]}
    n_train = int(np.floor(1200 * 0.8))
    with open(HOUSES, newline="") as f:
        rows = list(csv.DictReader(f))[:n_train]
    lots = [float(r["lot_area"]) for r in rows if r["lot_area"]]
    assert columns["lot_area"]["fill_value"] == pytest.approx(float(np.median(lots)))
    counts = {}
    for r in rows:
        counts[r["neighborhood"]] = counts.get(r["neighborhood"], 0) + 1
    assert columns["neighborhood"]["vocabulary"] == ["[UNK]", *sorted(counts, key=lambda k: (-counts[k], k))]
    assert info["target_names"] == ["price"] and info["input_width"] == 7
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pickle"))


def test_house_prices_predict_answers_in_currency_units(houses):
    work, out, _ = houses
    pred = work / "pred.csv"
    ok(["predict", out, "--input", HOUSES, "--output", pred])
    with open(pred, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["price"]
    predicted = np.array([float(r[0]) for r in rows[1:]])
    with open(HOUSES, newline="") as f:
        truth = np.array([float(r["price"]) for r in csv.DictReader(f)])
    assert predicted.shape == truth.shape
    # standardized for training, back in currency units here: the errors are a fraction of a price
    assert np.median(np.abs(predicted - truth) / truth) < 0.25
    table = ok(["predict", out, "--input", HOUSES])
    assert table_rows(table.stdout)[0] == ["#", "price"]


def test_house_prices_evaluate_report_and_scatter(houses):
    work, out, _ = houses
    report_path, png = work / "report.json", work / "scatter.png"
    result = ok(["evaluate", out, "--output", report_path, "--plot", png])
    report = json.loads(report_path.read_text())
    assert report["task"] == "regression"
    [target] = report["targets"]
    assert target["target"] == "price" and target["n"] == 240 and target["r2"] > 0.5
    assert 1e3 < target["mae"] < 2e5 and target["rmse"] >= target["mae"]  # currency units, not standardized
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(row[:1] == ["price"] for row in table_rows(result.stdout))


def test_predict_with_unseen_category_and_wrong_width(houses, tmp_path):
    work, out, _ = houses
    lines = HOUSES.read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    first[4] = "a_new_district"  # never seen in training: the [UNK] column
    write(tmp_path / "new.csv", header + "\n" + ",".join(first) + "\n")
    ok(["predict", out, "--input", tmp_path / "new.csv"])
    np.save(tmp_path / "wide.npy", np.zeros((3, 9), np.float32))
    [line] = error_lines(fails(["predict", out, "--input", tmp_path / "wide.npy"]))
    assert line.endswith("wide.npy: inputs have shape [n,9], the model expects [n,7] "
                         "(trained on columns lot_area, living_area, bedrooms, year_built, neighborhood, condition, garage)")


# ---------------------------------------------------------------- classes and class_weight


IRIS = """\
name: iris-weights
seed: 0
model:
  layers:
    - {type: dense, units: 3, activation: softmax, input_shape: [4]}
optimizer: {type: adam, learning_rate: 0.05}
loss: categorical_crossentropy
metrics: [acc]
data:
  train: {csv: IRIS_CSV, target: species}
  validation_split: 0.2
fit:
  epochs: 2
  class_weight: WEIGHTS
"""


def iris_config(tmp_path: Path, weights: str) -> Path:
    text = IRIS.replace("IRIS_CSV", str(ROOT / "data" / "iris.csv")).replace("WEIGHTS", weights)
    return write(tmp_path / "iris.yaml", text)


def test_class_weight_by_name_and_balanced(tmp_path):
    from sklearn.utils.class_weight import compute_class_weight

    result = ok(["train", iris_config(tmp_path, "{setosa: 1, virginica: 3}"), "--out", tmp_path / "named", "-q"])
    assert "classes: 0=setosa (weight 1)  1=versicolor  2=virginica (weight 3)" in result.stderr
    info = json.loads((tmp_path / "named" / "data.json").read_text())
    assert info["class_index"] == {"setosa": 0, "versicolor": 1, "virginica": 2}
    assert info["class_weight"] == {"0": 1.0, "2": 3.0}
    ok(["train", iris_config(tmp_path, "balanced"), "--out", tmp_path / "balanced", "-q"])
    info = json.loads((tmp_path / "balanced" / "data.json").read_text())
    with open(ROOT / "data" / "iris.csv", newline="") as f:
        labels = [r["species"] for r in csv.DictReader(f)][:120]  # the training split
    expected = compute_class_weight("balanced", classes=np.array(sorted(set(labels))), y=np.array(labels))
    np.testing.assert_allclose([info["class_weight"][str(i)] for i in range(3)], expected)


def test_class_weight_for_an_unknown_class_is_located(tmp_path):
    config = iris_config(tmp_path, "{setosa: 1, virginca: 3}")
    [line] = error_lines(fails(["train", config, "--out", tmp_path / "bad"]))
    assert line == (f"error: {config}:14:39: fit.class_weight.virginca: no class 'virginca'; did you mean 'virginica'?")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- validate opens the data


def test_validate_opens_the_data_and_locates_each_problem(tmp_path):
    good = iris_config(tmp_path, "{setosa: 1}")
    assert ok(["validate", good]).stdout.strip() == "ok"
    cases = [
        ("species}", "specie}", ":10:", "data.train.target: ", "unknown column 'specie'; did you mean 'species'?"),
        ("iris.csv", "nowhere.csv", ":10:", "data.train.csv: ", "nowhere.csv: no such file"),
        ("input_shape: [4]", "input_shape: [5]", ":5:", "model.layers.0.input_shape: ", "has 4 feature columns"),
        ("units: 3,", "units: 2,", ":5:", "model.layers.0.units: ", "the data has 3 classes"),
        ("{setosa: 1}", "{setosa: 1, dog: 2}", ":14:", "fit.class_weight.dog: ", "no class 'dog'"),
    ]
    for old, new, line_no, path, message in cases:
        bad = write(tmp_path / "bad.yaml", good.read_text().replace(old, new))
        [line] = error_lines(fails(["validate", bad]))
        assert line.startswith(f"error: {bad}{line_no}") and path in line and message in line, line


def test_a_csv_stream_fits_its_columns_on_one_pass(tmp_path):
    write(tmp_path / "s.csv", "color,size,y\nred,1,0.5\nblue,,1.5\nred,3,2.5\ngreen,5,3.5\n")
    write(tmp_path / "v.csv", "color,size,y\nblue,2,1.0\npurple,,2.0\n")
    source = {"csv": "s.csv", "target": "y", "labels": "none", "fill": "mean", "columns": {"color": "categorical"}}
    d = load({"stream": {"source": source}}, tmp_path,
             validation={"csv": "v.csv", "target": "y", "labels": "none", "fill": "mean", "columns": {"color": "categorical"}},
             target_preprocessing=["standardize"])
    assert d.stream.x_shape == (5,)  # [UNK], red, blue, green + size
    x, y, _ = next(iter(d.stream.batches(0, 4)))
    np.testing.assert_allclose(np.sort(x[:, 4]), [1, 3, 3, 5])  # the missing size took the mean of 1, 3, 5
    np.testing.assert_allclose(np.sort(y[:, 0]), (np.array([0.5, 1.5, 2.5, 3.5]) - 2.0) / np.sqrt(1.25), rtol=1e-6)
    np.testing.assert_array_equal(d.x_val, [[0, 0, 1, 0, 2], [1, 0, 0, 0, 3]])  # purple is [UNK]; fill from training
