"""course_utils.foundations.evaluation: list-valued knobs, top confusions, Markdown tables."""

import numpy as np
import pytest

from course_utils.errors import UsageError
from course_utils.foundations.evaluation import check_choices, markdown_table, top_confusions

ALLOWED = ("logistic", "mlp", "cnn")


@pytest.mark.parametrize("value, expected", [
    ("mlp,cnn", ("mlp", "cnn")),
    (" cnn , logistic ", ("cnn", "logistic")),
    (["logistic", "mlp", "cnn"], ("logistic", "mlp", "cnn")),
    (("cnn", "cnn", "mlp"), ("cnn", "mlp")),
    ("mlp,", ("mlp",)),
])
def test_check_choices_accepts_lists_and_strings(value, expected):
    assert check_choices("MODELS", value, ALLOWED) == expected


@pytest.mark.parametrize("value, fragment", [
    ("mlp,transformer", "'transformer' is unknown"),
    (["cnn", "CNN"], "'CNN' is unknown"),
    ("", "is empty"),
    ([], "is empty"),
    (3, "3 is unknown"),
])
def test_check_choices_rejects_with_one_clear_line(value, fragment):
    with pytest.raises(UsageError) as err:
        check_choices("MODELS", value, ALLOWED)
    message = str(err.value)
    assert fragment in message and "MODELS=" in message and "\n" not in message
    if "unknown" in fragment:
        assert "logistic, mlp, cnn" in message


def test_top_confusions_largest_off_diagonal_first():
    m = np.array([[50, 3, 0],
                  [7, 40, 1],
                  [3, 0, 45]])
    assert top_confusions(m, k=3) == [(1, 0, 7), (0, 1, 3), (2, 0, 3)]
    assert top_confusions(m, k=1) == [(1, 0, 7)]
    assert top_confusions(np.diag([5, 6, 7]), k=3) == []  # no mistakes: nothing to list


def test_top_confusions_validates():
    with pytest.raises(UsageError, match="square"):
        top_confusions(np.zeros((2, 3)))
    with pytest.raises(UsageError, match="k=0"):
        top_confusions(np.zeros((2, 2)), k=0)


def test_markdown_table():
    text = markdown_table(["model", "accuracy"], [["mlp", "0.68"], ["a|b", 0.5]])
    assert text.splitlines() == ["| model | accuracy |", "| --- | --- |",
                                 "| mlp | 0.68 |", "| a\\|b | 0.5 |"]
    with pytest.raises(UsageError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [["x"]])
    with pytest.raises(UsageError, match="header is empty"):
        markdown_table([], [])
