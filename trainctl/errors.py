"""Expected failures. The CLI prints each as one red line and exits 1; anything else is a bug."""


class TrainctlError(Exception):
    """A failure the user can fix: bad config, missing file, bad data, damaged run."""


class ConfigError(TrainctlError):
    """One or more config problems, each already formatted as `FILE:LINE:COL: path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(TrainctlError):
    """Data that cannot be used: unreadable file, bad row, wrong shape, labels out of range."""


class ArtifactError(TrainctlError):
    """A run directory or weights file that is missing, damaged or does not match its model."""


class ConfigValueError(TrainctlError):
    """Problems with config values that only show once the model is built (shapes, names,
    loss vs output): (dotted config path, message) pairs, so the CLI can point at the
    place in the file (`FILE:LINE:COL: model.layers.0.input_shape: ...`)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.problems))


class ExportRefused(TrainctlError):
    """A model (or its training setup) that a format cannot express: one line naming the
    layer or option and the format. Raised by layers' `to_keras_config` too, so it lives
    here, below both the layers and the formats."""
