"""Executing notebooks for ``hpdl``: what ``run`` and ``grade`` share.

How a notebook's kernel is started and how graded-check results are read back from an
executed notebook. Both the runner and the grader import it; it imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..checks.scoring import CHECK_MIME

# The kernel's own start-up warnings (e.g. "running over TCP without encryption" on a
# local machine, a KeyboardInterrupt logged at shutdown) would drown the progress lines;
# cell errors reach the run through the notebook itself.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
KERNEL_LOG_SUFFIX = ".kernel.log"


def kernel_log(output: Path) -> Path:
    """Where the kernel that executes ``output`` writes its own stdout and stderr."""
    return output.with_name(output.stem + KERNEL_LOG_SUFFIX)


def kernel_manager_logging_to(log_path: Path) -> type:
    """A kernel manager class whose kernels write their process-level output to a file.

    ipykernel copies what a cell writes to its file descriptors (C++ logging such as the
    PyTorch profiler's ``USDT: ... profiler_start`` lines, a subprocess's output) into the
    notebook *and* echoes it to the kernel's own stdout/stderr, which a kernel started by
    ``hpdl`` inherits from the terminal. Pointing those at ``log_path`` keeps the console
    to the progress bar and the summary; the notebook's outputs are unchanged, and a kernel
    that dies leaves its last words in the log.
    """
    from jupyter_client.manager import AsyncKernelManager

    class KernelWithLog(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:  # the kernel process keeps its own copy
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return KernelWithLog


def checks_from_notebook(nb: Any) -> list[dict[str, Any]]:
    """The graded-check outputs of an executed notebook (for the runner's report)."""
    found = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if CHECK_MIME in data:
                found.append(dict(data[CHECK_MIME]))
    return found


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block (they inherit
    ``os.environ``), and restore the previous values (or their absence) afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
