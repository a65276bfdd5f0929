"""``setup(PROFILE, DEVICE, SEED)``: the one call a notebook makes first.

It resolves the profile and the device, decides real CUDA or the simulator before
``numba.cuda`` is imported, seeds every generator, and prints one line saying what this
run is. Everything later asks the returned ``Context`` for sizes and the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import cudasim, parameters, profiles
from .device import gpu_available, resolve_device, seed_everything


@dataclass(frozen=True)
class Context:
    """What a notebook runs with: resolved profile and device, simulator or not, seed."""

    profile: str
    device: str
    seed: int
    simulator: bool
    hardware: str

    def size(self, key: str, knob: str, override: Any = None) -> Any:
        """A knob of lesson ``key``: ``override`` when given (checked against the knob's
        rule, see :mod:`course_utils.parameters`), else the profile's value."""
        if override is not None:
            override = parameters.check(key, knob, override)
        return profiles.size(self.profile, key, knob, override)

    def sizes(self, key: str, **overrides: Any) -> dict[str, Any]:
        """All knobs of lesson ``key``, with every non-``None`` override applied.

        Each override is checked against its knob's rule first: a bad value raises one
        ``UsageError`` naming the parameter (``HIDDEN=0 is not valid; ...``)."""
        values = profiles.sizes(self.profile, key)
        unknown = set(overrides) - set(values)
        if unknown:
            raise profiles.UsageError(
                f"{key!r} has no knob(s) {sorted(unknown)}; known: {', '.join(values)}"
            )
        values.update(parameters.check_overrides(key, overrides))
        return values

    @property
    def torch_device(self):
        """``torch.device`` for this run."""
        import torch

        return torch.device(self.device)

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    def summary(self) -> str:
        cuda = ("Numba CUDA simulator (kernel timings meaningless)" if self.simulator
                else "real CUDA GPU")
        return (f"hpdl | device: {self.device} | profile: {self.profile} | "
                f"kernels: {cuda} | seed: {self.seed} | {self.hardware}")


def setup(profile: str | None = "auto", device: str | None = "auto", seed: int = 0,
          *, verbose: bool = True) -> Context:
    """Resolve profile and device, pick simulator or GPU, seed; print one line."""
    from .env import hardware_label

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise profiles.UsageError(f"SEED={seed!r} is not valid; it must be an integer >= 0")
    resolved_device = resolve_device(device)
    resolved_profile = profiles.resolve_profile(profile, gpu_available=gpu_available())
    # DEVICE='cpu' on a GPU machine keeps kernels off the GPU too: use the simulator.
    simulator = cudasim.configure(True if resolved_device == "cpu" and gpu_available()
                                  else None)
    seed_everything(seed)
    ctx = Context(profile=resolved_profile, device=resolved_device, seed=seed,
                  simulator=simulator, hardware=hardware_label())
    if verbose:
        print(ctx.summary())
    return ctx
