"""rlreason.errors: one home for the error types (the modules that raise them re-export the same classes)."""
from rlreason import errors
from rlreason.config import ConfigError
from rlreason.rewards import RewardError
from rlreason.tasks.base import DataError


def test_one_class_per_error_wherever_it_is_imported_from():
    assert ConfigError is errors.ConfigError and DataError is errors.DataError and RewardError is errors.RewardError
    assert issubclass(errors.ConfigError, ValueError) and issubclass(errors.TrainingStopped, RuntimeError)
    err = errors.RewardError("term 'x' failed", term="x", index=3, sample_id="q7")
    assert (err.term, err.index, err.sample_id) == ("x", 3, "q7")


def test_first_line():
    assert errors.first_line(ValueError("bad value\nmore detail")) == "bad value"
    assert errors.first_line(ValueError("\n  indented first\nsecond")) == "indented first"
    assert errors.first_line(KeyError()) == "KeyError"
