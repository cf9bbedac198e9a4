"""The data section's schema: forms, aliases and messages."""

import pytest
from pydantic import ValidationError

from trainctl.data.config import CsvSource, DataConfig, StreamSource, TeacherGenerator


def problems(data: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate(data)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_forms_and_camel_case_aliases():
    cfg = DataConfig.model_validate({"train": {"generator": "teacher", "nSamples": 10, "nFeatures": 5},
                                     "validationSplit": 0.1, "preprocessing": ["standardize"]})
    assert isinstance(cfg.train, TeacherGenerator) and cfg.train.n_features == 5
    assert isinstance(DataConfig.model_validate({"train": {"csv": "a.csv", "target": 0}}).train, CsvSource)
    s = DataConfig.model_validate({"train": {"stream": {"source": {"npy": "x.npy"}, "shuffle": 500}}}).train
    assert isinstance(s, StreamSource) and s.stream.shuffle.buffer_size == 500
    again = DataConfig.model_validate(cfg.to_dict())  # the resolved config loads back
    assert again == cfg


def test_messages_point_at_the_key():
    assert problems({"train": {"generator": "blob"}}) == [(("train",), "Value error, unknown generator 'blob'; did you mean 'blobs'?")]
    assert problems({"train": {"csv": "a", "npy": "b"}})[0][1].endswith("not both csv and npy")
    assert problems({"train": {"csv": "a", "tagret": "y"}}) == [(("train", "tagret"), "Extra inputs are not permitted")]
    assert problems({"train": {"generator": "moons"}, "preprocessing": [{"type": "standardise"}]}) == [
        (("preprocessing", 0), "Value error, unknown preprocessing step 'standardise'; did you mean 'standardize'?")]
    both = problems({"train": {"generator": "moons", "n_samples": 0}, "validation": {"csv": 3}})
    assert [loc for loc, _ in both] == [("train", "n_samples"), ("validation", "csv")]  # every problem at once
    assert problems({"train": {"generator": "moons"}, "validation": {"generator": "moons"}, "validation_split": 0.2})[0][1] \
        == "Value error, give validation or validation_split, not both"
    assert problems({"train": {"stream": {"source": {"stream": {}}}}})[0][0] == ("train", "stream", "source")
