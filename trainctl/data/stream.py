"""The fitDataset path: source → map → shuffle(buffer_size) → batch → repeat / take.

```yaml
data:
  train:
    stream:
      source: {npy: big_x.npy, targets: big_y.npy}   # or csv / shards / npz / generator / zip
      shuffle: {buffer_size: 10000}                  # tf.data shuffle; omit for file order
      drop_remainder: false
      repeat: 1                                      # passes over the source per epoch
      take: null                                     # at most this many batches per epoch
  preprocessing: [{type: standardize}]               # the map stage, fitted on one pass
```

A `StreamSource` satisfies the `BatchSource` protocol of `trainctl.data.source`, so the
training loop reads it exactly as it reads in-memory arrays. Files are read a chunk of rows
at a time into reused buffers (.npy with one readinto per chunk, CSV through pyarrow's
parser), so the resident set stays flat however large the file. The shuffle buffer follows
tf.data: the buffer holds `buffer_size` rows; each incoming row swaps with a random slot and
the slot's old row is emitted; at the end the buffer is emitted in random order. Epoch e
shuffles with rng_for(seed, "shuffle-buffer", e): reproducible, different every epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from trainctl.data.config import DataConfig, StreamConfig
from trainctl.data.stream_rows import MemoryRows, Rows, TableRows, row_source
from trainctl.data.config import StreamSource as StreamSourceConfig  # the `{stream: ...}` config form
from trainctl.data.preprocessing import PreprocessingState, apply_preprocessing, apply_target_preprocessing, fit_preprocessing, one_hot
from trainctl.errors import DataError
from trainctl.seeding import rng_for



# ---------------------------------------------------------------- labels (part of the map stage)


class _Labels:
    """Turns a chunk's raw y (string labels, class indices or numbers) into encoded targets."""

    def __init__(self, encoding: str, n_classes: int | None, class_names: list[str] | None, description: str):
        self.encoding, self.n_classes, self.class_names = encoding, n_classes, class_names
        self.description = description
        self.lookup = {name: i for i, name in enumerate(class_names)} if class_names else None

    def __call__(self, y: np.ndarray | None) -> np.ndarray | None:
        if y is None:
            return None
        if y.dtype.kind in "US":  # text labels
            unique, inverse = np.unique(y, return_inverse=True)
            missing = [str(u) for u in unique if str(u) not in self.lookup]
            if missing:
                raise DataError(f"{self.description}: class {missing[0]!r} is not one of the classes {self.class_names}")
            indices = np.array([self.lookup[str(u)] for u in unique], dtype=np.int64)[inverse]
        elif self.encoding == "none":
            return np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)
        else:
            flat = y.reshape(len(y), -1)
            if flat.shape[1] != 1:
                raise DataError(f"{self.description}: class labels need one target column, got {flat.shape[1]}")
            indices = flat[:, 0]
            bad = np.flatnonzero((indices != np.floor(indices)) | (indices < 0) | (indices >= self.n_classes))
            if bad.size:
                raise DataError(f"{self.description}: label {indices[bad[0]]!r} is not a class index in [0, {self.n_classes})")
        if self.encoding == "one_hot":
            return one_hot(indices, self.n_classes, self.description)
        return np.asarray(indices, dtype=np.float32).reshape(-1, 1)


# ---------------------------------------------------------------- the pipeline


class StreamSource:
    """A BatchSource over a stream: per-epoch batches of (x, y, sample_weight) float32.

    x_shape / y_shape are per-sample shapes after preprocessing; n_samples is the number of
    rows per pass, or None when the source's length is unknown (CSV)."""

    def __init__(
        self,
        rows: Any,
        config: StreamConfig,
        seed: int,
        labels: _Labels,
        preprocessing: PreprocessingState,
        start: int = 0,
        stop: int | None = None,
        shuffle: bool = True,
    ):
        self.rows, self.config, self.seed = rows, config, seed
        self.labels, self.preprocessing = labels, preprocessing
        self.start = start
        self.stop = stop if stop is not None else rows.n_rows
        self.n_samples: int | None = None if self.stop is None else self.stop - start
        self.shuffle = config.shuffle if shuffle else None
        self.description = rows.description
        first_x, first_y, first_w = self._first_rows()
        self.x_shape: tuple[int, ...] = tuple(first_x.shape[1:])
        self.y_shape: tuple[int, ...] = tuple(first_y.shape[1:]) if first_y is not None else ()
        self.has_targets = first_y is not None
        self.has_weights = first_w is not None

    def _first_rows(self) -> Rows:
        for x, y, w in self._mapped(limit_rows=1):
            return x, y, w
        raise DataError(f"{self.description}: no data rows")

    def _mapped(self, limit_rows: int | None = None) -> Iterator[Rows]:
        """source → map: raw chunks with labels encoded and preprocessing applied."""
        chunk_rows = self.config.chunk_rows if limit_rows is None else limit_rows
        stop = self.stop if limit_rows is None or self.stop is None else min(self.stop, self.start + limit_rows)
        for x, y, w in self.rows.chunks(self.start, stop, chunk_rows):
            if limit_rows is not None:
                x, y, w = x[:limit_rows], None if y is None else y[:limit_rows], None if w is None else w[:limit_rows]
            x = apply_preprocessing(self.preprocessing, x) if self.preprocessing.steps else np.ascontiguousarray(x, dtype=np.float32)
            y = self.labels(y)
            if y is not None and (self.preprocessing.steps or self.preprocessing.target_steps):
                y = apply_target_preprocessing(self.preprocessing, y)
            yield x, y, w
            if limit_rows is not None:
                return

    def n_batches(self, batch_size: int) -> int | None:
        if self.n_samples is None:
            return None
        per_pass = self.n_samples // batch_size if self.config.drop_remainder else -(-self.n_samples // batch_size)
        total = per_pass * self.config.repeat
        return min(total, self.config.take) if self.config.take is not None else total

    def _shuffled(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, ...]]:
        """→ shuffle: rows as 2-D (x, y, w) blocks in shuffle-buffer order."""
        from trainctl.kernels.batches import gather_rows, shuffle_exchange

        size = self.shuffle.buffer_size if self.n_samples is None else min(self.shuffle.buffer_size, self.n_samples)
        buffers: list[np.ndarray] | None = None
        spare: list[np.ndarray] = []  # the emitted rows; reused chunk after chunk (see batches())
        filled = 0
        for parts in self._mapped():
            parts2d = _as_2d(parts, self.has_weights)
            if buffers is None:
                buffers = [np.empty((size, p.shape[1]), dtype=np.float32) for p in parts2d]
            n = len(parts2d[0])
            take = min(size - filled, n)
            if take:
                for buffer, p in zip(buffers, parts2d):
                    buffer[filled : filled + take] = p[:take]
                filled += take
            if take == n:
                continue
            slots = rng.integers(0, size, n - take, dtype=np.int64)
            if not spare or len(spare[0]) < n - take:
                spare = [np.empty((n - take, p.shape[1]), dtype=np.float32) for p in parts2d]
            outs = [out[: n - take] for out in spare]
            for buffer, p, out in zip(buffers, parts2d, outs):
                shuffle_exchange(buffer, np.ascontiguousarray(p[take:]), slots, out)
            yield tuple(outs)
        if buffers is None or filled == 0:
            return
        order = rng.permutation(filled).astype(np.int64)
        outs = [np.empty((filled, b.shape[1]), dtype=np.float32) for b in buffers]
        for buffer, out in zip(buffers, outs):
            gather_rows(buffer, order, 0, filled, out)
        yield tuple(outs)

    def _in_order(self) -> Iterator[tuple[np.ndarray, ...]]:
        for parts in self._mapped():
            yield _as_2d(parts, self.has_weights)

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """→ batch → repeat → take. Yielded arrays are reused buffers or views into the current
        block, valid until the next batch. A batch that lies whole inside a block is handed out
        as a view (no copy); only batches that straddle two blocks are copied together."""
        if not self.has_targets:
            raise DataError(f"{self.description}: a training stream needs targets")
        x_width, y_width = int(np.prod(self.x_shape, dtype=np.int64)), int(np.prod(self.y_shape, dtype=np.int64))
        x_buf = np.empty((batch_size, x_width), dtype=np.float32)
        y_buf = np.empty((batch_size, y_width), dtype=np.float32)
        w_buf = np.empty((batch_size, 1), dtype=np.float32) if self.has_weights else None
        bufs = [b for b in (x_buf, y_buf, w_buf) if b is not None]
        emitted = 0
        limit = self.config.take

        def out(count: int):
            x = x_buf[:count].reshape(count, *self.x_shape)
            y = y_buf[:count].reshape(count, *self.y_shape)
            return x, y, (w_buf[:count, 0] if w_buf is not None else None)

        def view(block: tuple[np.ndarray, ...], pos: int, count: int):
            x = block[0][pos : pos + count].reshape(count, *self.x_shape)
            y = block[1][pos : pos + count].reshape(count, *self.y_shape)
            return x, y, (block[2][pos : pos + count, 0] if self.has_weights else None)

        for repetition in range(self.config.repeat):
            if self.shuffle is not None:
                shuffle_epoch = epoch if self.shuffle.reshuffle_each_iteration else 0
                purpose = ("shuffle-buffer", shuffle_epoch) if repetition == 0 else ("shuffle-buffer", shuffle_epoch, repetition)
                blocks = self._shuffled(rng_for(self.seed, *purpose))
            else:
                blocks = self._in_order()
            held = 0
            for block in blocks:
                n, pos = len(block[0]), 0
                while pos < n:
                    if held == 0 and n - pos >= batch_size:
                        if emitted >= start_batch:
                            yield view(block, pos, batch_size)
                        pos += batch_size
                        emitted += 1
                        if limit is not None and emitted >= limit:
                            return
                        continue
                    take = min(batch_size - held, n - pos)
                    for buf, part in zip(bufs, block):
                        buf[held : held + take] = part[pos : pos + take]
                    held += take
                    pos += take
                    if held == batch_size:
                        if emitted >= start_batch:
                            yield out(batch_size)
                        emitted += 1
                        held = 0
                        if limit is not None and emitted >= limit:
                            return
            if held and not self.config.drop_remainder:
                if emitted >= start_batch:
                    yield out(held)
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

    def inputs(self) -> Iterator[np.ndarray]:
        """x blocks in file order (for predict), preprocessed, without batching."""
        for x, _, _ in self._mapped():
            yield x


def _as_2d(parts: Rows, has_weights: bool) -> tuple[np.ndarray, ...]:
    x, y, w = parts
    out = [x.reshape(len(x), -1), y.reshape(len(y), -1)]
    if has_weights:
        out.append(np.asarray(w, dtype=np.float32).reshape(-1, 1))
    return tuple(out)


# ---------------------------------------------------------------- load_data for streams


def _survey_classes(rows: Any, start: int, stop: int | None, chunk_rows: int, class_names: list[str] | None) -> tuple[int | None, list[str] | None, bool]:
    """One pass over the labels: (n_classes, class_names, labels are text)."""
    uniques: set = set()
    text = False
    if hasattr(rows, "label_chunks"):
        ys = rows.label_chunks(start, stop, chunk_rows)
    else:
        ys = (y for _, y, _ in rows.chunks(start, stop, chunk_rows))
    for y in ys:
        if y is None:
            return None, None, False
        if y.dtype.kind in "US":
            text = True
            uniques.update(str(u) for u in np.unique(y))
        else:
            flat = y.reshape(len(y), -1)
            if flat.shape[1] != 1:
                return None, None, False
            uniques.update(np.unique(flat[:, 0]).tolist())
    if text:
        names = class_names or sorted(uniques)
        return len(names), names, True
    if not uniques:
        return None, None, False
    values = np.array(sorted(uniques))
    if (values != np.floor(values)).any() or values.min() < 0:
        return None, None, False
    k = len(class_names) if class_names else int(values.max()) + 1
    return k, class_names or [str(i) for i in range(k)], False


def build_stream(
    source: StreamSourceConfig, data_config: DataConfig, seed: int, base_dir: Path, loss: str | None,
    *, fitted: tuple | None = None, shuffle: bool = True,
) -> tuple[StreamSource, Any]:
    """A StreamSource for `source` and (encoding, n_classes, class_names, preprocessing state).

    `fitted` passes the training stream's label encoding and preprocessing to validation."""
    config = source.stream
    rows = row_source(config.source, seed, base_dir, "train" if fitted is None else "validation", config.chunk_rows)
    return _finish(rows, config, data_config, seed, loss, fitted, 0, None, shuffle)


def _finish(rows, config, data_config, seed, loss, fitted, start, stop, shuffle):
    from trainctl.data.labels import label_encoding

    steps = list(data_config.preprocessing)
    option = getattr(config.source, "labels", "auto")
    given_names = getattr(config.source, "class_names", None)
    needs_encoding = isinstance(rows, TableRows) and rows.table.needs_encoding
    if fitted is not None and needs_encoding:
        rows.encoder = fitted[3].tabular
    if fitted is None:
        if needs_encoding:
            rows.fit_encoder()
        has_one_hot = any(step.type == "one_hot" for step in steps)
        natural = rows.string_labels or (isinstance(rows, MemoryRows) and rows.raw.labels is not None)
        if isinstance(rows, MemoryRows) and rows.raw.labels is not None:
            n_classes, names = rows.raw.n_classes, given_names or rows.raw.class_names
        else:
            n_classes, names = None, given_names
        encoding = label_encoding(option, loss, n_classes, natural, has_one_hot)
        needs_classes = encoding != "none" and (n_classes is None)
        if needs_classes or (encoding == "none" and rows.string_labels):
            n_classes, names, text = _survey_classes(rows, start, stop, config.chunk_rows, given_names)
            if n_classes is None:
                raise DataError(f"{rows.description}: targets are not class labels, but labels: {option} with loss {loss!r} needs classes")
            if option == "auto" and encoding == "none" and text:
                encoding = label_encoding(option, loss, n_classes, True, has_one_hot)
            elif option == "auto":
                encoding = label_encoding(option, loss, n_classes, True, has_one_hot)
        labels = _Labels(encoding, n_classes, names, rows.description)
        raw_stream = StreamSource(rows, config, seed, labels, PreprocessingState([], []), start, stop, shuffle=False)
        state = fit_preprocessing(steps, lambda: (x for x, _, _ in raw_stream._mapped()), None, n_classes)
        state.tabular = rows.encoder if needs_encoding else None
        if needs_encoding:
            state.input_width = len(rows.table.layout)
        if data_config.target_preprocessing:
            from trainctl.data.preprocessing import _moments

            if encoding != "none":
                raise DataError(f"{rows.description}: target_preprocessing scales regression targets; these targets are class labels")
            mean, var, _ = _moments(y for _, y, _ in raw_stream._mapped() if y is not None)
            state.target_steps = list(data_config.target_preprocessing)
            state.target_stats = [{"mean": mean.astype(np.float32), "std": np.maximum(np.sqrt(var), step.epsilon).astype(np.float32)}
                                  for step in state.target_steps]
        fitted = (encoding, n_classes, names, state)
    encoding, n_classes, names, state = fitted
    labels = _Labels(encoding, n_classes, names, rows.description)
    return StreamSource(rows, config, seed, labels, state, start, stop, shuffle=shuffle), fitted


def load_stream_data(data_config: DataConfig, seed: int, base_dir: Path, loss: str | None):
    """load_data for `train: {stream: ...}`: StreamSources instead of arrays."""
    from trainctl.data import LoadedData

    train_cfg = data_config.train
    val_stream = None
    if data_config.validation_split > 0:
        config = train_cfg.stream
        rows = row_source(config.source, seed, base_dir, "train", config.chunk_rows)
        if rows.n_rows is None:
            raise DataError(
                f"{rows.description}: validation_split needs a stream of known length (.npy, .npz, a generator); "
                "give validation: instead"
            )
        n_train = int(np.floor(rows.n_rows * (1.0 - data_config.validation_split)))
        if n_train == 0 or n_train == rows.n_rows:
            raise DataError(f"{rows.description}: validation_split {data_config.validation_split} of {rows.n_rows} samples leaves an empty split")
        train, fitted = _finish(rows, config, data_config, seed, loss, None, 0, n_train, True)
        val_stream, _ = _finish(rows, config, data_config, seed, loss, fitted, n_train, rows.n_rows, False)
        val_description = f"last {rows.n_rows - n_train} samples of {rows.description}"
    else:
        train, fitted = build_stream(train_cfg, data_config, seed, base_dir, loss)
        val_description = None
    encoding, n_classes, names, state = fitted
    loaded = LoadedData(
        x=None, y=None, class_names=names if encoding != "none" else None,
        feature_names=train.rows.feature_names, description=train.description,
        label_encoding=encoding, preprocessing=state, stream=train,
    )
    validation = data_config.validation
    if validation is not None:
        if isinstance(validation, StreamSourceConfig):
            val_stream, _ = build_stream(validation, data_config, seed, base_dir, loss, fitted=fitted, shuffle=False)
            val_description = val_stream.description
        else:
            from trainctl.data import encode_targets, read_source

            raw = read_source(validation, seed, base_dir, "validation", names)
            if state.tabular is not None:
                raw.x = state.tabular.transform(raw.x, raw.text, raw.description)
            y_val, _, _ = encode_targets(raw, "sparse" if any(s.type == "one_hot" for s in state.steps) else encoding, n_classes, names)
            loaded.x_val = apply_preprocessing(state, raw.x)
            loaded.y_val = apply_target_preprocessing(state, y_val) if y_val is not None else None
            loaded.sample_weight_val = raw.sample_weight
            val_description = raw.description
    loaded.validation_stream = val_stream
    loaded.validation_description = val_description
    return loaded
