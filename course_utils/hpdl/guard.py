"""Inside a graded run: what the checks rely on is put back before every check cell.

``hpdl grade`` runs a student's answers inside the master notebook, in the same Python
process as the checks. An answer could rebind ``check``, replace a check function, patch
``numpy.testing`` or an attribute (or a class attribute) of course_utils, and so pass
checks it should fail. The grader injects one cell after the master's setup cell::

    guard = Guard(globals())       # snapshot: modules, course_utils classes, setup names

then ``guard.restore()`` before each check cell (everything the snapshot holds is put
back: names in the notebook, module attributes, class attributes, ``sys.modules``
entries) and ``guard.changes()`` after it (what code run *during* the check changed: the
check then scores 0). Names the answers define themselves are left alone.

This defends the checks against Python-level tampering. It is not a sandbox: code that
runs in the kernel can do anything the kernel's user can, so grade untrusted submissions
in a container or a throw-away account, as with any autograder.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

PROTECTED = ("builtins", "numpy", "torch", "course_utils")
"""Module name prefixes whose attributes are snapshotted (with their submodules)."""


def _protected(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PROTECTED)


class Guard:
    """A snapshot of what the checks rely on, taken before any answer runs."""

    def __init__(self, namespace: dict[str, Any]):
        _import_checks()  # so that an answer cannot import and patch one before a check does
        self.namespace = namespace
        self.modules = {name: mod for name, mod in list(sys.modules.items())
                        if _protected(name) and isinstance(mod, types.ModuleType)}
        self.module_dicts = {name: dict(vars(mod)) for name, mod in self.modules.items()}
        self.classes = {}
        for name, mod in self.modules.items():
            if not name.startswith("course_utils"):
                continue
            for value in list(vars(mod).values()):
                if isinstance(value, type) and value.__module__ == name:
                    self.classes[value] = dict(vars(value))
        # The modules, functions and classes the setup cell bound (``check``, ``np``,
        # ``cuda_checks``...): what the check cells call. Plain values (sizes, ``cfg``) are
        # left alone: the master's own cells may rebind them (lab 3's THREADS).
        self.names = {k: v for k, v in namespace.items()
                      if not k.startswith("_") and (isinstance(v, types.ModuleType)
                                                    or callable(v))}

    # ------------------------------------------------------------------ compare
    def changes(self, names: bool = True) -> list[str]:
        """What differs from the snapshot, one line each (empty: nothing); ``names=False``
        leaves the notebook's own names out."""
        found = []
        for name, mod in self.modules.items():
            if sys.modules.get(name) is not mod:
                found.append(f"sys.modules[{name!r}] was replaced")
            current = vars(mod)
            for key, value in self.module_dicts[name].items():
                if not _same(name, current.get(key, _MISSING), value) \
                        and not _volatile(name, key):
                    found.append(f"{name}.{key} was changed")
        for cls, saved in self.classes.items():
            current = vars(cls)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value and key != "__dict__":
                    found.append(f"{cls.__module__}.{cls.__qualname__}.{key} was changed")
        for key, value in self.names.items() if names else ():
            if self.namespace.get(key, _MISSING) is not value:
                found.append(f"the name {key!r} was rebound")
        return found

    # ------------------------------------------------------------------ restore
    def restore(self) -> list[str]:
        """Put everything back; return what had been changed."""
        found = self.changes()
        for name, mod in self.modules.items():
            sys.modules[name] = mod
            current = vars(mod)
            for key, value in self.module_dicts[name].items():
                if not _same(name, current.get(key, _MISSING), value) \
                        and not _volatile(name, key):
                    try:
                        setattr(mod, key, value)
                    except (AttributeError, TypeError):  # pragma: no cover - read-only
                        pass
        for cls, saved in self.classes.items():
            current = vars(cls)
            for key, value in saved.items():
                if key in ("__dict__", "__weakref__"):
                    continue
                if current.get(key, _MISSING) is not value:
                    setattr(cls, key, value)
        for key, value in self.names.items():
            self.namespace[key] = value
        return found

    # ------------------------------------------------------------------ the grader's cells
    def restore_and_report(self, mime: str, cell: int) -> None:
        """Before a check cell: put everything back, and tell the grader what changed."""
        found = self.restore()
        if found:
            _show({mime: found}, f"[grader] put back before the check of cell {cell}: "
                  + "; ".join(found[:5]))

    def verify(self, declared: list[tuple[str, float]], check_mime: str) -> None:
        """After a check cell: if the code it ran changed what checks rely on, its checks
        score 0 (the grader takes this cell's results over the check's own); restore."""
        found = self.changes(names=False)
        if not found:
            return
        message = ("your code changed the grader while this check ran ("
                   + "; ".join(found[:3]) + "): the check cannot be trusted, so it scores 0")
        for name, points in declared:
            _show({check_mime: {"name": name, "points": 0, "max_points": points,
                                "passed": False, "message": message}},
                  f"[FAIL] {name}: 0/{points:g} points - {message}")
        self.restore()


def _import_checks() -> None:
    import importlib
    import pkgutil

    import course_utils.checks as checks

    for info in pkgutil.iter_modules(checks.__path__, "course_utils.checks."):
        importlib.import_module(info.name)
    importlib.import_module("course_utils.gpu.sanitizer")
    importlib.import_module("course_utils.gpu.launch")


class _Missing:
    pass


_MISSING = _Missing()


def _same(module: str, current: Any, saved: Any) -> bool:
    """``current`` is ``saved``, or PyTorch's own wrapper of it: the first import of
    ``torch._dynamo`` (an optimizer's first step triggers it) rebinds ``torch.manual_seed``
    and a few others to ``torch._disable_dynamo(f)``, whose ``__wrapped__`` is ``f`` and
    whose code is PyTorch's (a wrapper written in a notebook is not)."""
    if current is saved:
        return True
    if not module.startswith("torch") or getattr(current, "__wrapped__", None) is not saved:
        return False
    import torch

    code = getattr(current, "__code__", None)
    home = os.path.dirname(torch.__file__)
    return code is not None and os.path.abspath(code.co_filename).startswith(home + os.sep)


def _volatile(module: str, key: str) -> bool:
    """Attributes that change on their own while checks run (caches, counters, the
    results table), not tampering."""
    if module == "builtins" and key in ("_", "input", "raw_input"):  # ipykernel's own, per cell
        return True
    return key.startswith("__") or key in ("RESULTS", "_launching", "_active", "RECORDED") \
        or (module.startswith("numpy") and key.startswith("_")) \
        or (module.startswith("torch") and key.startswith("_"))


def _show(data: dict[str, Any], text: str) -> None:
    from IPython.display import display

    display({"text/plain": text, **data}, raw=True)
