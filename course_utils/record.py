"""``record(name, value, unit)``: a headline number, labelled with its hardware.

In a notebook the number is shown and also emitted as an output with the MIME type
``application/vnd.hpdl.record+json``; ``hpdl run`` gathers those outputs of each executed
notebook into ``results.json`` (and the notebook's metadata). Outside Jupyter (a script,
a test) the number is kept in ``RECORDED`` and printed.
"""

from __future__ import annotations

import math
from typing import Any

MIME = "application/vnd.hpdl.record+json"
RECORDED: dict[str, dict[str, Any]] = {}


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


def record(name: str, value: float, unit: str, *, device: str | None = None,
           hardware: str | None = None, meaningful: bool = True, note: str = "") -> None:
    """Record a headline number (kept in ``RECORDED[name]``; returns nothing, so a
    ``record(...)`` on a cell's last line prints only its one line).

    ``device``: where the number was measured, ``"cuda"`` or ``"cpu"`` (NumPy work on a GPU
    machine is a CPU number); by default the GPU when there is one, else the CPU.
    ``hardware`` replaces the label outright.
    ``meaningful=False`` marks a number that must not be read as performance (a CUDA
    simulator timing): it is still recorded, with that label, so nobody plots it by mistake.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("record(): name must be a non-empty string")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"record({name!r}): value {value} is not a finite number")
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"record({name!r}): device={device!r}; choose 'cpu' or 'cuda'")
    if hardware is None:
        from .env import hardware_label

        hardware = hardware_label(gpus=[] if device == "cpu" else None)
    entry = {"value": value, "unit": unit, "hardware": hardware, "meaningful": meaningful}
    if note:
        entry["note"] = note
    RECORDED[name] = entry
    flag = "" if meaningful else "  [not a performance number]"
    text = f"recorded {name} = {value:.6g} {unit}  ({hardware}){flag}"
    if _in_ipython():
        from IPython.display import display

        display({"text/plain": text, MIME: {"name": name, **entry}}, raw=True)
    else:
        print(text)


def metrics_from_notebook(nb: Any) -> dict[str, dict[str, Any]]:
    """Every ``record`` output of an executed notebook, by name (last one wins)."""
    metrics: dict[str, dict[str, Any]] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if MIME in data:
                payload = dict(data[MIME])
                metrics[payload.pop("name")] = payload
    return metrics
