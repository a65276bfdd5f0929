"""Simulator or real CUDA, decided before numba is imported (each case in a fresh process)."""

import subprocess
import sys

import pytest

KERNEL = """
import numpy as np
import course_utils
ctx = course_utils.setup("quick", {device!r}, 0, verbose=False)
from numba import cuda

@cuda.jit
def add_one(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1

a = np.arange(37, dtype=np.float32)
add_one[3, 16](a)
np.testing.assert_array_equal(a, np.arange(37) + 1)
print("simulator" if course_utils.on_simulator() else "gpu", ctx.simulator)
"""


def _run(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_cpu_device_runs_kernels_on_the_simulator():
    result = _run(KERNEL.format(device="cpu"), {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["simulator", "True"]


def test_numba_imported_first_with_other_setting_is_a_clear_error():
    code = ("import os; os.environ['NUMBA_ENABLE_CUDASIM'] = '0'\nimport numba\n"
            "import course_utils\ncourse_utils.cudasim.configure(True)")
    result = _run(code, {})
    assert result.returncode != 0
    assert "Restart the kernel" in result.stderr


def test_skip_on_simulator_says_why(capsys, monkeypatch):
    from course_utils import cudasim

    monkeypatch.setattr(cudasim, "on_simulator", lambda: True)
    assert cudasim.skip_on_simulator("warp shuffle", "the simulator has no shuffles")
    assert "warp shuffle: the simulator has no shuffles" in capsys.readouterr().out


@pytest.mark.gpu
def test_real_gpu_runs_kernels_off_the_simulator():
    result = _run(KERNEL.format(device="cuda"), {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gpu", "False"]
