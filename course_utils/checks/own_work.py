"""The answers a lab checks must be the student's own, not the course's.

The lessons' kernels, layers and collectives live in course_utils, one import away from a
lab notebook. A graded check therefore refuses an answer that *is* course code (a kernel
imported from ``course_utils.gpu.kernels``), that *refers* to course code (a kernel calling
lesson 09's ``block_tree``, a layer calling ``numpy_mlp.softmax_cross_entropy``, a ring
built from lesson 12's ``ring_reduce_scatter``), or that *calls* it while it runs (a host
function that reached it through an alias): :func:`require_own` looks at the code,
:func:`no_course_calls` watches the calls. The message names what was used and where the
course teaches it.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import importlib
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Modules that hold what the labs ask for (or the checks' references), and where each is
# taught. A module inside one of these packages counts as that package.
ANSWER_MODULES = {
    "course_utils.gpu.kernels": "lessons 07-09",
    "course_utils.foundations.numpy_mlp": "lesson 01",
    "course_utils.training.collectives": "lesson 12",
    "course_utils.checks": "the lab's own checks",
}
_MAX_DEPTH = 4  # own helpers calling own helpers: how deep references are followed


def answer_module(module_name: str | None) -> str | None:
    """The entry of :data:`ANSWER_MODULES` that ``module_name`` belongs to, or None."""
    if not module_name:
        return None
    for name in ANSWER_MODULES:
        if module_name == name or module_name.startswith(name + "."):
            return name
    return None


def _module_of(obj: Any) -> str | None:
    """Where ``obj`` was defined: a module's own name, a kernel's Python function's module,
    a function's or class's module, else the module of the object's type."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    func = getattr(obj, "py_func", None)  # a Numba kernel or device function
    if func is not None:
        return getattr(func, "__module__", None)
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
        return getattr(obj, "__module__", None)
    if isinstance(obj, types.MethodType):
        return _module_of(obj.__func__)
    if isinstance(obj, functools.partial):
        return _module_of(obj.func)
    return getattr(type(obj), "__module__", None)


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """The Python functions whose code makes up ``obj``: a function, a kernel's function,
    a class's methods (its own and its bases', but not ``object``'s)."""
    func = getattr(obj, "py_func", obj)
    if isinstance(func, types.MethodType):
        func = func.__func__
    if isinstance(func, types.FunctionType):
        return [func]
    if isinstance(obj, type):
        found = []
        for klass in obj.__mro__[:-1]:
            for value in vars(klass).values():
                value = getattr(value, "__func__", value)  # staticmethod, classmethod
                if isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType):
                    found.append(value)
        return found
    return []


def _refers_into_package(module: types.ModuleType, names: set[str]) -> str | None:
    """``course_utils.gpu`` used as ``course_utils.gpu.kernels.reductions.block_tree``: the
    answer module reached through a parent package, from the attribute names used."""
    for answer in ANSWER_MODULES:
        if answer.startswith(module.__name__ + "."):
            rest = answer[len(module.__name__) + 1:].split(".")
            if rest[0] in names:
                return answer
    return None


def _globals_read(func: types.FunctionType) -> set[str]:
    """The global names ``func``'s code (nested functions included) reads, not the
    attribute names it uses: ``self.check`` must not be taken for the global ``check``."""
    return {ins.argval for code in _code_objects(func.__code__)
            for ins in dis.get_instructions(code)
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str)}


def _course_reference(func: types.FunctionType) -> tuple[str, str, Any] | None:
    """The first global name in ``func``'s code that leads to course code:
    (name, module it comes from, the object)."""
    names = {n for code in _code_objects(func.__code__) for n in code.co_names}
    for name in sorted(_globals_read(func)):
        if name not in func.__globals__:
            continue
        obj = func.__globals__[name]
        module = answer_module(_module_of(obj))
        if module is None and isinstance(obj, types.ModuleType):
            module = _refers_into_package(obj, names)
        if module is not None:
            return name, module, obj
    return None


def require_own(obj: Any, what: str) -> None:
    """Raise ``AssertionError`` if ``what`` (the student's answer ``obj``) is course code
    or uses it, directly or through the student's own helpers."""
    module = answer_module(_module_of(obj))
    if module is not None:
        qual = getattr(getattr(obj, "py_func", obj), "__qualname__", type(obj).__name__)
        raise AssertionError(
            f"{what} is {_module_of(obj)}.{qual}, the course's own code "
            f"({ANSWER_MODULES[module]}): the lab asks you to write it yourself, in this "
            "notebook")
    seen: set[int] = set()
    todo = [(f, 0) for f in _functions_of(obj)]
    while todo:
        func, depth = todo.pop()
        if id(func) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(func))
        found = _course_reference(func)
        if found is not None:
            name, module, _ = found
            where = what if depth == 0 else f"{what} (through {func.__name__})"
            raise AssertionError(
                f"{where} uses {name} from {module}, the course's own code "
                f"({ANSWER_MODULES[module]}): the lab asks you to write this part yourself")
        for name in _globals_read(func):
            helper = func.__globals__.get(name)
            if helper is None or helper is obj or isinstance(helper, type):
                continue
            if str(_module_of(helper) or "").split(".")[0] in _LIBRARIES:
                continue  # a library's function, not one of the student's helpers
            todo += [(f, depth + 1) for f in _functions_of(helper)]


# Packages whose functions are not followed into (they are not the student's helpers).
_LIBRARIES = {"numpy", "torch", "numba", "math", "builtins", "course_utils", "scipy"}


def _answer_paths() -> tuple[str, ...]:
    paths = []
    for name in ANSWER_MODULES:
        module = importlib.import_module(name)
        file = Path(module.__file__ or "")
        paths.append(str(file.parent) + "/" if file.name == "__init__.py" else str(file))
    return tuple(paths)


@contextlib.contextmanager
def no_course_calls(what: str) -> Iterator[None]:
    """Fail with ``AssertionError`` if code of :data:`ANSWER_MODULES` runs inside the block
    (the block should run only the student's answer): catches course code reached through
    any alias. Kernel threads of the CUDA simulator are watched too."""
    paths = _answer_paths()
    course = str(Path(__file__).resolve().parents[1]) + "/"
    hits: list[str] = []

    def profile(frame, event, arg):  # noqa: ARG001 - sys.setprofile's signature
        filename = frame.f_code.co_filename
        if event != "call" or hits or not filename.startswith(paths) or filename == __file__ \
                or frame.f_code.co_name == "<module>":  # importing it is not using it
            return
        caller = frame.f_back
        if caller is not None and caller.f_code.co_filename.startswith(course):
            return  # the course calling itself (a check's own helpers), not the answer
        module = frame.f_globals.get("__name__", frame.f_code.co_filename)
        hits.append(f"{module}.{frame.f_code.co_name}")

    old_sys, old_thread = sys.getprofile(), threading.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(old_sys)
        threading.setprofile(old_thread)
    if hits:
        module = answer_module(hits[0].rsplit(".", 1)[0]) or "course_utils"
        raise AssertionError(
            f"{what} ran {hits[0]}, the course's own code ({ANSWER_MODULES.get(module, '')}): "
            "the lab asks you to write this part yourself")


def answers_own(*names: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a check whose arguments ``names`` are the student's answers: each must be
    their own (:func:`require_own`), and the check runs under :func:`no_course_calls`."""
    def decorate(check: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(check)

        @functools.wraps(check)
        def checked(*args: Any, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            for name in names:
                require_own(bound.arguments.get(name), name)
            with no_course_calls(", ".join(names)):
                return check(*args, **kwargs)
        return checked
    return decorate
