"""``show_source``: print a function's (or a Numba kernel's) source in a notebook."""

from __future__ import annotations

import inspect
import textwrap
from typing import Any


def unwrap(obj: Any) -> Any:
    """The Python function behind a Numba dispatcher or a CUDA kernel (real or simulated)."""
    for attr in ("py_func", "fn", "__wrapped__"):
        inner = getattr(obj, attr, None)
        if callable(inner):
            return unwrap(inner)
    return obj


def source_of(obj: Any) -> str:
    """The source code of ``obj`` (decorators included), dedented."""
    return textwrap.dedent(inspect.getsource(unwrap(obj)))


def show_source(*objs: Any):
    """Display the source of each object as a highlighted Python block (plain text
    outside IPython), so a lesson can show the kernel it is about to run."""
    code = "\n\n".join(source_of(obj).rstrip() for obj in objs)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(f"```python\n{code}\n```"))
            return None
    except ImportError:  # pragma: no cover - IPython is a dependency
        pass
    print(code)
    return None
