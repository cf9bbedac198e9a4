"""Issue 15, items 3-4: files that are not what they claim give one line naming the file and
what is wrong, through train, validate and predict; an unrelated file's lines never reach
the message (only a short, escaped excerpt of a cell)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.test_hostile.common import BASE, MB, cli, config_with_data, write

SECRET = "password=hunter2-do-not-print"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    good = "a,b,c,d,label\n" + "".join(f"{i},{i + 1},{i + 2},{i + 3},{'xyz'[i % 3]}\n" for i in range(12))
    (root / "latin1.csv").write_bytes(good.encode() + "\xe9t\xe9,1,2,3,x\n".encode("latin-1"))
    (root / "notzip.npz").write_bytes(b"PK\x03\x04 this is not really a zip archive\n" * 4)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 4), }"
    header += " " * (117 - len(header)) + "\n"
    (root / "lying.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)
    (root / "secret.txt").write_text(f"{SECRET} {SECRET} {SECRET},x\n1,2\n3,4\n")
    (root / "cells.csv").write_text(f"a,b,c,d,label\n1,2,3,{SECRET}\x1b[31m,x\n")
    np.save(root / "y.npy", np.zeros(8, np.int64))
    lying_npz = root / "lying.npz"
    import io
    import zipfile

    with zipfile.ZipFile(lying_npz, "w") as archive:
        archive.writestr("x.npy", (root / "lying.npy").read_bytes())
    trained = root / "run"
    done = cli("train", write(root, "cfg.yaml", BASE), "-q", "--out", trained)
    assert done.code == 0, done.stderr
    return root


CASES = [  # (name, data source in the config / predict input, what the line must say)
    ("non-UTF-8 CSV", "{csv: latin1.csv, target: label}", "latin1.csv:14: not UTF-8 text (byte 0xe9)"),
    ("not a zip", "{npz: notzip.npz}", "notzip.npz: not a .npz file (not a zip archive, or a damaged one)"),
    ("lying .npy header", "{npy: lying.npy, targets: y.npy}", "lying.npy: the header claims shape [99999999999, 4]"),
    ("lying .npz member", "{npz: lying.npz, y_key: null}", "lying.npz: array 'x' claims shape [99999999999, 4]"),
    ("stream of a lying .npy", "{stream: {source: {npy: lying.npy}}}", "lying.npy: the header claims shape"),
    ("unrelated text file", "{csv: secret.txt, target: label}", "secret.txt: unknown column 'label'"),
    ("bad cell", "{csv: cells.csv, target: label}", "cells.csv:2: row 1, column 'd': 'password=hunter2-do-n...' is not a number"),
]


def check(result, expected: str) -> list[str]:
    try:
        line = result.clean_error()
    except AssertionError as error:
        return [str(error)]
    problems = []
    if expected not in line:
        problems.append(f"expected {expected!r} in {line!r}")
    if SECRET in result.stderr or "\x1b" in result.stderr:
        problems.append(f"the file's content leaked into the message: {line!r}")
    if len(line) > 400:
        problems.append(f"line too long ({len(line)} chars)")
    if result.rss > 300 * MB:
        problems.append(f"peak RSS {result.rss / MB:.0f} MB")
    return problems


def test_files_that_lie_give_one_line_in_validate_train_and_predict(files):
    jobs = []
    for name, source, expected in CASES:
        config = write(files, f"{name.replace(' ', '_')}.yaml", config_with_data(source))
        if name != "bad cell":  # validate reads headers, not rows
            jobs.append((f"validate {name}", ("validate", config), expected))
        jobs.append((f"train {name}", ("train", config, "-q", "--out", files / "never" / name.replace(" ", "_")), expected))
    for name, path, expected in [("non-UTF-8 CSV", "latin1.csv", "latin1.csv:14: not UTF-8 text"),
                                 ("not a zip", "notzip.npz", "not a .npz file"),
                                 ("lying .npy header", "lying.npy", "the header claims shape [99999999999, 4]"),
                                 ("unrelated text file", "secret.txt", "secret.txt")]:
        jobs.append((f"predict {name}", ("predict", files / "run", "--input", files / path), expected))
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda job: (job[0], cli(*job[1], cwd=files), job[2]), jobs))
    problems = [f"{name}: {p}" for name, result, expected in results for p in check(result, expected)]
    assert not problems, "\n".join(problems)
    assert not (files / "never").exists()
