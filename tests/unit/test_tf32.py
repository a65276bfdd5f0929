"""course_utils.tf32: TF32 switches read and set with the API this PyTorch has.

PyTorch 2.9+ raises RuntimeError when code reads a legacy ``allow_tf32`` flag after the
new ``fp32_precision`` settings were used: the course must never do that.
"""

import pytest
import torch

from course_utils import tf32
from course_utils.gpu import roofline
from course_utils.training import ladder


@pytest.fixture(autouse=True)
def keep_tf32_state():
    saved = tf32._raw()
    yield
    tf32._set_raw(*saved)


def test_this_pytorch_has_the_new_api_and_refuses_mixing():
    assert tf32.new_api()
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    with pytest.raises(RuntimeError, match="legacy and new APIs"):
        _ = torch.backends.cuda.matmul.allow_tf32  # what the course used to read


def test_enabled_sets_and_restores_both_switches():
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    with tf32.enabled(True):
        assert tf32.state() == {"matmul": "tf32", "conv": "tf32"}
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert tf32.state() == {"matmul": "ieee", "conv": "tf32"}
    with pytest.raises(ZeroDivisionError), tf32.enabled(False):
        assert tf32.state() == {"matmul": "ieee", "conv": "ieee"}
        _ = 1 / 0
    assert tf32.state() == {"matmul": "ieee", "conv": "tf32"}


def test_none_inherits_the_generic_setting():
    torch.backends.cuda.matmul.fp32_precision = "none"
    assert tf32.state()["matmul"] in tf32.PRECISIONS


def test_course_code_works_after_the_new_api_was_used():
    """The lesson's helpers and the ladder's TF32 rung once read the legacy flags: after a
    student (or PyTorch itself) used the new settings, they raised RuntimeError."""
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    assert roofline.tf32_state() == {"matmul": "tf32", "conv": "ieee"}
    with roofline.tf32_enabled(False):
        assert tf32.state() == {"matmul": "ieee", "conv": "ieee"}
    with ladder._backend_flags(ladder.LadderConfig(tf32=True), torch.device("cpu")):
        pass
    assert tf32.state() == {"matmul": "tf32", "conv": "ieee"}
