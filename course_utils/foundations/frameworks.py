"""Lesson 02's helpers: lesson 01's NumPy parameters in a PyTorch model, the autograd
graph as text, and ``torch.compile`` timed honestly.

* ``copy_numpy_params`` / ``numpy_grads``: move parameters and gradients between lesson
  01's convention (``W`` of shape (n_in, n_out), ``Z = A @ W + b``) and ``nn.Linear``'s
  (``weight`` of shape (n_out, n_in), ``Z = A @ weight.T + bias``), so a notebook can assert
  that autograd computes exactly the hand-written gradients.
* ``autograd_graph``: the graph PyTorch recorded while running the forward pass, walked
  from a result's ``grad_fn`` back to the leaves, as an indented tree.
* ``compiler_status``: whether ``torch.compile``'s default backend (Inductor) can generate
  code on a device here (a C++ compiler for the CPU, Triton for CUDA), so a lesson skips
  compilation with a clear reason only where it cannot work, and never hides a failure.
* ``first_call``: time the first call of a function (a compile) through
  ``course_utils.benchmark`` and keep its result.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..timing import Timing, benchmark

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
CXX_CANDIDATES = ("g++", "clang++", "c++")


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``net`` in the order they are registered."""
    return [module for module in net.modules() if isinstance(module, nn.Linear)]


def copy_numpy_params(net: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    """Load lesson-01 parameters ``{"W1", "b1", ...}`` into the linear layers of ``net``.

    ``W{i}`` (n_in, n_out) becomes layer ``i``'s ``weight`` (n_out, n_in), i.e. ``W.T``;
    values are copied in the dtype and onto the device of ``net``'s parameters. Raises
    ``UsageError`` if the number of layers or a shape does not match.
    """
    layers = linear_layers(net)
    n_layers = len(params) // 2
    if len(layers) != n_layers or set(params) != _param_names(n_layers):
        raise UsageError(f"the model has {len(layers)} linear layers but the parameters are "
                         f"{sorted(params)}; expected W1, b1, ..., W{len(layers)}, "
                         f"b{len(layers)}")
    with torch.no_grad():
        for i, layer in enumerate(layers, start=1):
            W, b = np.asarray(params[f"W{i}"]), np.asarray(params[f"b{i}"])
            if W.T.shape != tuple(layer.weight.shape) or b.shape != tuple(layer.bias.shape):
                raise UsageError(
                    f"layer {i}: W{i} {W.shape} and b{i} {b.shape} do not fit nn.Linear "
                    f"weight {tuple(layer.weight.shape)} (= W.T) and bias "
                    f"{tuple(layer.bias.shape)}")
            layer.weight.copy_(torch.as_tensor(W.T.copy()))
            layer.bias.copy_(torch.as_tensor(b))


def numpy_grads(net: nn.Module) -> dict[str, np.ndarray]:
    """The ``.grad`` of every linear layer in lesson 01's convention (``W`` = weight.T).

    Raises ``UsageError`` if a gradient is missing (``backward()`` has not run yet).
    """
    grads = {}
    for i, layer in enumerate(linear_layers(net), start=1):
        if layer.weight.grad is None or layer.bias.grad is None:
            raise UsageError(f"layer {i} has no gradient: call loss.backward() first")
        grads[f"W{i}"] = layer.weight.grad.detach().cpu().numpy().T.copy()
        grads[f"b{i}"] = layer.bias.grad.detach().cpu().numpy().copy()
    return grads


def _param_names(n_layers: int) -> set[str]:
    return {f"{kind}{i}" for i in range(1, n_layers + 1) for kind in ("W", "b")}


def autograd_graph(tensor: torch.Tensor, names: Mapping[str, torch.Tensor] | None = None,
                   max_nodes: int = 60) -> str:
    """The backward graph behind ``tensor`` as an indented tree, one node per line.

    Each node is the ``grad_fn`` that will compute one operation's gradient; the leaves,
    ``AccumulateGrad``, add a gradient into a tensor's ``.grad`` and are labelled with the
    name of that tensor in ``names`` (e.g. ``dict(net.named_parameters())``) and its shape.
    A node reached a second time (the graph is a DAG) is marked and not expanded again.
    """
    if tensor.grad_fn is None:
        return (f"(no graph: this tensor has requires_grad={tensor.requires_grad} and was "
                f"not computed from a tensor that requires grad)")
    labels = {id(value): name for name, value in (names or {}).items()}
    lines: list[str] = []
    seen: set[int] = set()

    def label(node) -> str:
        text = type(node).__name__
        variable = getattr(node, "variable", None)
        if variable is not None:
            name = labels.get(id(variable), "leaf")
            text += f" -> {name}.grad {tuple(variable.shape)}"
        return text

    def visit(node, prefix: str, last: bool, root: bool) -> None:
        if len(lines) >= max_nodes:
            return
        branch = "" if root else ("└─ " if last else "├─ ")
        if id(node) in seen:
            lines.append(f"{prefix}{branch}{label(node)} (shared: see above)")
            return
        seen.add(id(node))
        lines.append(f"{prefix}{branch}{label(node)}")
        children = [child for child, _ in node.next_functions if child is not None]
        inner = prefix if root else prefix + ("   " if last else "│  ")
        for k, child in enumerate(children):
            visit(child, inner, k == len(children) - 1, False)

    visit(tensor.grad_fn, "", True, True)
    if len(lines) >= max_nodes:
        lines.append(f"... (stopped after {max_nodes} nodes)")
    return "\n".join(lines)


def compiler_status(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``torch.compile``'s default backend can generate code for ``device`` here.

    Inductor writes C++ (with OpenMP) for the CPU and compiles it with the system's C++
    compiler (``$CXX``, else g++ or clang++); for CUDA it writes Triton kernels. Returns
    ``(True, what it will use)`` or ``(False, why not and how to fix it)``.
    """
    device = torch.device(device)
    if not torch._dynamo.is_dynamo_supported():
        return False, (f"TorchDynamo does not support this Python/platform "
                       f"(torch {torch.__version__}); torch.compile cannot run here")
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False, ("Inductor needs Triton for CUDA and it is not installed: "
                           "pip install triton (CUDA builds of PyTorch include it)")
        return True, "Triton kernels for the GPU"
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else list(CXX_CANDIDATES)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return True, f"C++ kernels compiled with {path}"
    return False, (f"no C++ compiler found (looked for {', '.join(candidates)}): Inductor "
                   f"compiles C++ for the CPU. Install one (apt install g++, "
                   f"conda install gxx, Xcode command-line tools) or set CXX")


def first_call(fn: Callable[[], Any], sync: str = "torch") -> tuple[Any, Timing]:
    """Call ``fn()`` once, timed by ``benchmark(warmup=0, repeats=1)``; its result and time.

    For a ``torch.compile``'d function the first call is where compilation happens, so
    this is its compile time (plus one ordinary call).
    """
    box: dict[str, Any] = {}

    def call() -> None:
        box["result"] = fn()

    timing = benchmark(call, warmup=0, repeats=1, sync=sync)
    return box["result"], timing
