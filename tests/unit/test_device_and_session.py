import numpy as np
import pytest
import torch

import course_utils
from course_utils import device
from course_utils.errors import DeviceUnavailableError, UsageError


def test_auto_device_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(device, "gpu_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"
    monkeypatch.setattr(device, "gpu_available", lambda: True)
    assert device.resolve_device("auto") == "cuda"


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device, "gpu_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        device.resolve_device("cuda")


def test_unknown_device_lists_choices():
    with pytest.raises(UsageError, match="auto, cpu, cuda"):
        device.resolve_device("tpu")


def test_seed_everything_repeats_numpy_and_torch():
    device.seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    device.seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_setup_prints_one_line_and_returns_context(capsys):
    ctx = course_utils.setup("quick", "cpu", 1)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "profile: quick" in out[0] and "device: cpu" in out[0]
    assert ctx.profile == "quick" and ctx.device == "cpu" and ctx.seed == 1
    assert ctx.torch_device == torch.device("cpu")
    assert ctx.sizes("dnn_from_scratch", hidden=5)["hidden"] == 5


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_setup_rejects_bad_seed(seed):
    with pytest.raises(UsageError, match="SEED"):
        course_utils.setup("quick", "cpu", seed, verbose=False)


def test_context_sizes_rejects_unknown_knob():
    ctx = course_utils.setup("quick", "cpu", 0, verbose=False)
    with pytest.raises(UsageError, match="no knob"):
        ctx.sizes("dnn_from_scratch", widht=3)


@pytest.mark.gpu
def test_cuda_device_on_gpu_runner():
    # Simulator off on a GPU is checked in a fresh process (test_cudasim): in this one,
    # an earlier setup(DEVICE="cpu") may already have chosen the simulator for Numba.
    ctx = course_utils.setup("full", "cuda", 0, verbose=False)
    assert ctx.device == "cuda" and ctx.profile == "full"
    x = torch.ones(1000, device=ctx.torch_device)
    assert float(x.sum()) == 1000.0


def test_set_deterministic_off_leaves_cudnn_autotuning_alone():
    """It once switched cudnn.benchmark on as a side effect of switching determinism off."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled())
    try:
        torch.backends.cudnn.benchmark = True
        course_utils.set_deterministic(True)
        assert torch.backends.cudnn.benchmark is False
        assert torch.backends.cudnn.deterministic is True
        course_utils.set_deterministic(False)
        assert torch.backends.cudnn.benchmark is False  # not turned on behind our back
        assert torch.backends.cudnn.deterministic is False
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=True)
