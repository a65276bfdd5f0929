"""The shared parameter checks: one parser for every list knob (``-p`` passes text)."""

import numpy as np
import pytest

from course_utils.errors import UsageError, as_list, check_choices, check_ints, check_numbers
from course_utils.hpdl.runner import parse_parameter


@pytest.mark.parametrize("text, expected", [
    ("2,3", [2, 3]), ("[2, 3]", [2, 3]), ("(2, 3)", [2, 3]), ("2 3", [2, 3]), ("4", [4]),
    ("mlp, cnn", ["mlp", "cnn"]), ("['mlp', 'cnn']", ["mlp", "cnn"]),
    ("1, 2.5", [1, 2.5]), ("", []), ("[]", []),
])
def test_as_list_reads_text_as_hpdl_and_papermill_pass_it(text, expected):
    assert as_list(text) == expected


def test_as_list_keeps_sequences_and_wraps_scalars():
    assert as_list((1, 2)) == [1, 2]
    assert as_list(range(2)) == [0, 1]
    assert as_list(7) == [7]


@pytest.mark.parametrize("raw", ["2,3,4", "[2, 3, 4]", "(2,3,4)"])
def test_every_list_knob_accepts_what_hpdl_run_p_passes(raw):
    _, value = parse_parameter("WORLD_SIZES", raw)
    assert check_ints("world_sizes", value, minimum=2) == [2, 3, 4]


def test_check_ints_accepts_numpy_integers():
    assert check_ints("sizes", np.array([1, 2]).tolist(), minimum=1) == [1, 2]
    assert check_ints("sizes", [np.int64(3)], minimum=1) == [3]


@pytest.mark.parametrize("value, kwargs", [
    ("", {}), ([1, 1], {"distinct": True}), ("2,x", {}), ([2, 1], {}), ([True], {}),
    ("2.5", {}), (None, {}),
])
def test_check_ints_rejects_with_one_line_naming_the_knob(value, kwargs):
    with pytest.raises(UsageError) as err:
        check_ints("world_sizes", value, minimum=2, **kwargs)
    message = str(err.value)
    assert message.startswith("world_sizes=") and "-p WORLD_SIZES" in message
    assert ">= 2" in message and "\n" not in message


def test_check_numbers():
    assert check_numbers("bucket_caps_mb", "1, 25") == [1.0, 25.0]
    with pytest.raises(UsageError, match="numbers > 0"):
        check_numbers("bucket_caps_mb", "0,25")


def test_check_choices_keeps_order_and_drops_repeats():
    assert check_choices("MODELS", "cnn,mlp,cnn", ["mlp", "cnn"]) == ("cnn", "mlp")
    with pytest.raises(UsageError, match="'rnn' is unknown; choose one or more of: mlp, cnn"):
        check_choices("MODELS", ["rnn"], ["mlp", "cnn"])
