"""course_utils: the shared module every notebook of the course imports.

A notebook starts with::

    import course_utils
    ctx = course_utils.setup(PROFILE, DEVICE, SEED)

and then uses ``ctx.size(...)`` for its sizes, ``benchmark`` for every timing and
``record`` for every headline number. The core modules live here; the units' packages
(foundations/, gpu/, training/), the labs' checks/ and the hpdl/ command beside them:
see docs/architecture.md for the layout and its import rule.
"""

from __future__ import annotations

from .cudasim import on_simulator, skip_on_simulator
from .device import pick_device, seed_everything, set_deterministic
from .errors import CourseError, DeviceUnavailableError, UsageError
from .paths import build_path
from .record import record
from .session import Context, setup
from .source import show_source
from .timing import benchmark, benchmark_alternating, gbps, gflops, matmul_flop

__version__ = "0.1.0"

__all__ = [
    "Context", "CourseError", "DeviceUnavailableError", "UsageError", "benchmark",
    "benchmark_alternating",
    "build_path", "gbps", "gflops", "matmul_flop", "on_simulator", "pick_device", "record",
    "seed_everything", "set_deterministic", "setup", "show_source", "skip_on_simulator",
]
