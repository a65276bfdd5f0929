"""Real CUDA or Numba's CUDA simulator, decided before ``numba.cuda`` is imported.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when ``numba`` is first imported. The simulator
runs every CUDA thread as a Python thread: kernels give the same *answers* as on a GPU,
so students can write and check kernels on a laptop, but its *timings* mean nothing, and it
lacks warp shuffles, ``@vectorize(target="cuda")``, ``@guvectorize(target="cuda")`` and
event timing. ``on_simulator()`` lets a cell skip those with a printed reason.
"""

from __future__ import annotations

import os
import sys

from .errors import CourseError

ENV_VAR = "NUMBA_ENABLE_CUDASIM"


def _env_flag() -> bool | None:
    value = os.environ.get(ENV_VAR)
    if value is None or value.strip() == "":
        return None
    return value.strip() not in ("0", "false", "False", "no")


def configure(use_simulator: bool | None = None) -> bool:
    """Decide simulator or real CUDA, once, before Numba is imported; return the choice.

    ``None`` keeps an explicit ``NUMBA_ENABLE_CUDASIM`` from the environment, else uses the
    simulator exactly when no real GPU is present. If Numba was already imported with the
    other setting, that cannot be changed any more: a CourseError says to restart.
    """
    from .device import gpu_available

    _numpy_compat()
    wanted = use_simulator
    if wanted is None:
        wanted = _env_flag()
    if wanted is None:
        wanted = not gpu_available()
    if "numba" in sys.modules:
        import numba

        current = bool(numba.config.ENABLE_CUDASIM)
        if current != wanted:
            raise CourseError(
                f"numba was imported before course_utils.setup() with "
                f"{ENV_VAR}={int(current)}, but this run needs {int(wanted)}. "
                "Restart the kernel and run the setup cell before importing numba."
            )
        if current:
            from . import launch_log

            launch_log.install_from_env()
        return current
    os.environ[ENV_VAR] = "1" if wanted else "0"
    if wanted:
        from . import launch_log

        launch_log.install_from_env()  # only with HPDL_KERNEL_LOG set (hpdl kernels)
    return wanted


def _numpy_compat() -> None:
    """Let numba-cuda releases that still call ``np.row_stack`` run on NumPy >= 2.5.

    NumPy 2.5 removed ``row_stack`` (an alias of ``vstack``); numba-cuda 0.30 still calls it
    when it compiles a kernel, so every kernel fails on a GPU node that pairs the two (seen
    on an H100 image with numba-cuda 0.30.4 and NumPy 2.5.2). Restoring the alias is exact.
    """
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def on_simulator() -> bool:
    """True when ``numba.cuda`` is (or will be) the simulator."""
    if "numba" in sys.modules:
        import numba

        return bool(numba.config.ENABLE_CUDASIM)
    flag = _env_flag()
    if flag is not None:
        return flag
    from .device import gpu_available

    return not gpu_available()


def skip_on_simulator(what: str, reason: str) -> bool:
    """Print why ``what`` is skipped and return True when on the simulator.

    Use as ``if not skip_on_simulator("warp-shuffle reduction", "no shuffles"): ...``.
    """
    if on_simulator():
        print(f"[skipped on the CUDA simulator] {what}: {reason}")
        return True
    return False
