"""What the access checker costs: the lab checks with and without it, on the simulator.

Takes the kernels from the lab masters themselves (their parameters and kernel cells run
here, in the quick profile), runs each graded check of labs 2 and 3 on them twice, plainly
and with every launch under ``course_utils.gpu.sanitizer.watch()`` (what the checks do),
and prints the median time of each and their ratio. The goal is at most 3x.

    python benchmarks/sanitizer_overhead.py [--repeats 3] [--json build/sanitizer_overhead.json]

Times are of Python on this CPU (the simulator): meaningful as a ratio, not as GPU speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
os.environ.setdefault("HPDL_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")


def lab_namespace(master: str) -> dict:
    """Run a master's parameters and setup cells and every cell that defines a kernel or a
    function (not the checks, demos or pictures); return the resulting namespace."""
    import nbformat

    nb = nbformat.read(REPO / "labs" / "solutions" / master, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    namespace: dict = {"__name__": "__lab__"}
    for source in code[:2] + [s for s in code[2:] if "@cuda.jit" in s or
                              s.lstrip().startswith(("def ", "TILE ="))]:
        exec(compile(source, master, "exec"), namespace)  # noqa: S102 - our own masters
    return namespace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the setup cells print their config
        lab2 = lab_namespace("lab2_cuda_kernels.ipynb")
        lab3 = lab_namespace("lab3_reduction_histogram.ipynb")
    from course_utils.checks import cuda as cc

    cfg2 = lab2["cfg"]
    cases = {
        "lab 2 sgd momentum": lambda: cc.check_sgd_momentum(lab2["sgd_momentum"],
                                                            threads=cfg2["threads"]),
        "lab 2 blur": lambda: cc.check_blur(lab2["blur"],
                                            block=(cfg2["block_x"], cfg2["block_y"])),
        "lab 2 tiled linear": lambda: cc.check_linear_tiled(lab2["linear_tiled"],
                                                            tile=lab2["TILE"]),
        "lab 3 block amax": lambda: cc.check_block_amax(lab3["block_amax"],
                                                        threads=lab3["THREADS"]),
        "lab 3 two-pass amax": lambda: cc.check_reduce_amax(
            lab3["reduce_amax"], threads=lab3["THREADS"], block_amax=lab3["block_amax"]),
        "lab 3 histogram": lambda: cc.check_histogram(
            lab3["histogram_shared"], threads=lab3["THREADS"], nbins=lab3["NBINS"]),
    }

    @contextlib.contextmanager
    def unwatched(where, hint="", *, verdict=True):
        yield None

    def median_time(run) -> float:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    rows = []
    for name, run in cases.items():
        run()  # compile and warm up, checker on (it must pass)
        watched = median_time(run)
        original = cc.watched
        cc.watched = unwatched
        try:
            plain = median_time(run)
        finally:
            cc.watched = original
        rows.append({"check": name, "plain_s": plain, "watched_s": watched,
                     "ratio": watched / plain})
    total_plain = sum(r["plain_s"] for r in rows)
    total_watched = sum(r["watched_s"] for r in rows)
    print(f"{'check':22s} {'plain s':>8s} {'checker s':>10s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['check']:22s} {r['plain_s']:8.2f} {r['watched_s']:10.2f} {r['ratio']:6.2f}")
    print(f"{'all':22s} {total_plain:8.2f} {total_watched:10.2f} "
          f"{total_watched / total_plain:6.2f}   (goal: at most 3x; CUDA simulator, "
          f"{os.cpu_count()} CPUs, median of {args.repeats})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "total_ratio":
                                         total_watched / total_plain}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
