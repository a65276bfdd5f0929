"""course_utils.show_source prints what a lesson is about to run, kernels included."""

from course_utils import source


def _sample(x):
    """A documented sample."""
    return x + 1


def test_source_of_plain_function(capsys):
    assert source.source_of(_sample).startswith("def _sample(x):")
    source.show_source(_sample)
    assert "return x + 1" in capsys.readouterr().out


def test_source_of_numba_jit_and_cuda_kernel():
    from numba import njit

    jitted = njit(_sample)
    assert "return x + 1" in source.source_of(jitted)
    assert source.unwrap(jitted) is _sample
