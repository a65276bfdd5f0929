"""A log of the kernels launched on Numba's CUDA simulator, for ``hpdl kernels``.

The simulator runs a kernel as Python: it accepts code that the real CUDA compiler
rejects, and it says nothing about registers or shared memory. ``hpdl kernels`` compiles
every kernel of the course for real GPU targets (sm_80, sm_90) on a machine without a GPU,
and needs what only a run knows: the argument types each kernel is launched with, the
block size, and the constants and device functions its code refers to.

With ``HPDL_KERNEL_LOG=<file>`` in the environment, each process that sets the simulator
up (``course_utils.setup``, or importing ``course_utils.gpu.kernels``) appends one JSON
line to that file per distinct launch: the kernel's source without its decorators, where
it is defined, the values of the globals it reads, its device functions (recursively),
argument types and launch configuration. Nothing is logged without the variable, and
nothing is logged on a real GPU (there, Numba compiles for the real target anyway).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import sys
import textwrap
import types
from typing import Any

ENV_VAR = "HPDL_KERNEL_LOG"
SCHEMA = "hpdl-kernel-launch/1"
MAX_CONSTANT_ARRAY = 4096  # elements: a global array a kernel reads is baked in as a constant

_installed = False
_seen: set[tuple] = set()
_described: dict[int, dict] = {}


class Unsupported(Exception):
    """A kernel refers to a global value that cannot be written back as source."""


def install_from_env() -> bool:
    """Start logging launches when ``HPDL_KERNEL_LOG`` is set and the simulator is on."""
    global _installed
    path = os.environ.get(ENV_VAR, "").strip()
    if _installed or not path:
        return _installed
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip() not in ("1", "true", "True", "yes"):
        return False
    import numba

    if not numba.config.ENABLE_CUDASIM:
        return False
    from numba.cuda.simulator import kernel as sim_kernel

    original = sim_kernel.FakeCUDAKernel.__call__

    def log(self: Any, args: tuple, config: tuple) -> None:
        try:
            _log(path, self, args, *config)
        except Exception as exc:  # never break a lesson because the log failed
            print(f"hpdl kernel log: {type(exc).__name__}: {exc}", file=sys.stderr)

    def logged_call(self: Any, *args: Any) -> Any:
        if self._device or sim_kernel._kernel_context:
            return original(self, *args)
        config = (self.block_dim, self.grid_dim, self.dynshared_size)
        # A launch that fails for its arguments (a TypeError: the wrong number or kind, as
        # when a test passes a lab's arguments to a lesson's kernel) is not logged; one that
        # fails inside, past an array's end (lesson 07 shows that on purpose), is.
        try:
            result = original(self, *args)
        except IndexError:
            log(self, args, config)
            raise
        log(self, args, config)
        return result

    sim_kernel.FakeCUDAKernel.__call__ = logged_call
    _installed = True
    return True


def _dims(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _log(path: str, kernel: Any, args: tuple, block_dim: Any, grid_dim: Any,
         dynamic_shared: int) -> None:
    arg_types = [argument_type(a) for a in args]
    block = _dims(block_dim)
    key = (id(kernel.fn), json.dumps(arg_types), tuple(block), int(dynamic_shared))
    if key in _seen:
        return
    _seen.add(key)
    try:
        described = describe(kernel.fn, fastmath=bool(kernel._fastmath))
        error = None
    except (Unsupported, OSError, SyntaxError, TypeError) as exc:
        described = {"name": kernel.fn.__name__, "qualname": kernel.fn.__qualname__,
                     **_where(kernel.fn)}
        try:  # the source alone still tells hpdl kernels where the kernel is defined
            described["source"] = _function_source(kernel.fn)
        except (Unsupported, OSError, SyntaxError, TypeError):
            pass
        error = f"{type(exc).__name__}: {exc}"
    record = {"schema": SCHEMA, "kernel": described, "error": error, "args": arg_types,
              "grid": _dims(grid_dim), "block": block,
              "dynamic_shared_bytes": int(dynamic_shared), "pid": os.getpid()}
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def argument_type(arg: Any) -> dict:
    """A kernel argument's Numba type, as the real CUDA target would see it."""
    import numpy as np

    array = getattr(arg, "_ary", arg)  # the simulator's device arrays wrap a NumPy array
    if isinstance(array, np.ndarray) and array.ndim > 0:
        if array.dtype.fields is not None:
            raise Unsupported(f"record arrays ({array.dtype}) are not supported")
        layout = ("C" if array.flags.c_contiguous else
                  "F" if array.flags.f_contiguous else "A")
        return {"array": array.dtype.name, "ndim": array.ndim, "layout": layout}
    import numba

    return {"scalar": str(numba.typeof(arg))}


def _where(fn: Any) -> dict:
    code = fn.__code__
    return {"file": code.co_filename, "line": code.co_firstlineno}


def _function_source(fn: Any) -> str:
    """The function's source without decorators, dedented."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise Unsupported(f"{fn.__qualname__} is not defined by a def statement")
    lines = source.splitlines()
    return "\n".join(lines[node.lineno - 1:node.end_lineno]) + "\n"


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _is_sim_kernel(value: Any) -> bool:
    return type(value).__name__ == "FakeCUDAKernel" and hasattr(value, "fn")


def _value(name: str, value: Any) -> dict:
    """How to write ``value`` back as source in the compiling process."""
    import numpy as np

    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, (bool, int, float, complex)) or value is None:
        return {"literal": repr(value)}
    if isinstance(value, tuple) and all(isinstance(v, (bool, int, float)) for v in value):
        return {"literal": repr(value)}
    if isinstance(value, np.generic):
        return {"numpy_scalar": type(value).__name__, "literal": repr(value.item())}
    if isinstance(value, type) and issubclass(value, np.generic):
        return {"numpy_type": value.__name__}
    if isinstance(value, np.dtype):
        return {"numpy_dtype": value.name}
    if isinstance(value, np.ndarray) and value.dtype.fields is None \
            and value.size <= MAX_CONSTANT_ARRAY:
        return {"numpy_array": value.tolist(), "dtype": value.dtype.name}
    import numba

    if isinstance(value, numba.core.types.Type) and hasattr(numba.types, str(value)):
        return {"numba_type": str(value)}
    if _is_sim_kernel(value):
        if not value._device:
            raise Unsupported(f"{name} is a kernel launched from a kernel (dynamic "
                              "parallelism)")
        return {"device_function": describe(value.fn, fastmath=bool(value._fastmath))}
    raise Unsupported(f"global {name!r} is a {type(value).__module__}."
                      f"{type(value).__qualname__}, which cannot be rebuilt as source")


def describe(fn: Any, *, fastmath: bool = False) -> dict:
    """Source, location and global values of a kernel or device function (cached)."""
    cached = _described.get(id(fn))
    if cached is not None:
        return cached
    code = fn.__code__
    values: dict[str, Any] = {}
    cells = fn.__closure__ or ()
    closure = dict(zip(code.co_freevars, (c.cell_contents for c in cells), strict=True))
    for name in sorted(_code_names(code) | set(closure)):
        if name in closure:
            values[name] = _value(name, closure[name])
        elif name in fn.__globals__:
            values[name] = _value(name, fn.__globals__[name])
        # else a builtin (range, min) or an attribute name (threadIdx, shape, x)
    described = {"name": fn.__name__, "qualname": fn.__qualname__, **_where(fn),
                 "source": _function_source(fn), "fastmath": fastmath, "globals": values}
    _described[id(fn)] = described
    return described
