"""The ``hpdl`` command: ``env``, ``run``, ``student``, ``grade``, ``compare``, ``site``,
``colab``, ``gpu-check``.

Exit status: 0 success, 1 some notebook failed (``run``) or the student notebooks are out
of date (``student --check``), 2 bad usage (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import paths
from ..errors import CourseError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"hpdl: error: {message} (see hpdl {self.prog.split()[-1]} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from .runner import RESULTS_SCHEMA

    parser = _Parser(prog="hpdl", description="High Performance Deep Learning course tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_env = sub.add_parser("env", help="hardware fingerprint and what is missing, with fixes")
    p_env.add_argument("--json", action="store_true", help="print JSON")

    p_run = sub.add_parser(
        "run", help="execute lessons and labs with papermill into build/",
        description="Execute notebooks with papermill into --out (default build/), "
        "mirroring the source tree; write results.json and report.html.",
        epilog=RESULTS_SCHEMA, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_run.add_argument("paths", nargs="*", metavar="PATH",
                       help="notebooks or folders (default: lessons/ labs/solutions/)")
    p_run.add_argument("--profile", default="auto", help="quick | full | auto (default)")
    p_run.add_argument("--device", default="auto", help="auto (default) | cpu | cuda")
    p_run.add_argument("--out", default=None, help="output folder (default: build/)")
    p_run.add_argument("--timeout", type=float, default=600,
                       help="seconds each notebook may run (default 600)")
    p_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                       metavar=("NAME", "VALUE"), help="set a notebook parameter (repeatable)")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bar")

    p_student = sub.add_parser("student", help="write student labs from labs/solutions/")
    p_student.add_argument("--check", action="store_true",
                           help="write nothing; exit 1 if a committed student lab is stale")

    p_grade = sub.add_parser(
        "grade", help="grade lab submissions against their masters (a class at once)",
        description="Each submission's answers run inside its lab's master (its checks, "
                    "points and given code), with check inputs from a seed drawn per run. "
                    "With several submissions (files or folders) a gradebook is written.")
    p_grade.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                         help="student .ipynb files, or folders of them")
    p_grade.add_argument("--json", action="store_true", help="print JSON")
    p_grade.add_argument("--timeout", type=float, default=600,
                         help="seconds per submission (default 600)")
    p_grade.add_argument("--profile", default="quick", choices=("quick", "full"),
                         help="sizes the checks use (default quick)")
    p_grade.add_argument("--cell-timeout", type=float, default=180,
                         help="seconds one cell may run before it counts as hung (default 180)")
    p_grade.add_argument("--seed", type=int, default=None,
                         help="the checks' input seed (default: a fresh one per run)")
    p_grade.add_argument("--out", default=None,
                         help="folder for gradebook.json and gradebook-<lab>.csv "
                              "(default build/grades when several submissions are given)")
    p_grade.add_argument("--demos", action="store_true",
                         help="also run the master's demo cells (pictures, timings, plots: "
                              "they grade nothing and are left out by default)")

    p_compare = sub.add_parser(
        "compare", help="compare a run's results.json with reference results",
        description="Print the metrics of RESULTS beside REFERENCE's, with ratios, flagging "
        "those far off with a likely cause. REFERENCE: a results.json, or the name of one in "
        "results/reference/ (default: the one named after RESULTS' GPU). Exit status: 0 "
        "nothing far off, 1 something far off or a unit mismatch, 2 bad usage.")
    p_compare.add_argument("results", metavar="RESULTS",
                           help="results.json of `hpdl run` (or the folder holding it)")
    p_compare.add_argument("reference", metavar="REFERENCE", nargs="?", default=None,
                           help="reference results.json or its name in results/reference/")
    p_compare.add_argument("--tolerance", type=float, default=2.0, metavar="F",
                           help="ok when value/reference is within 1/F..F (default 2)")
    p_compare.add_argument("--json", action="store_true", help="print JSON")

    p_site = sub.add_parser(
        "site", help="a static course website from a run's executed notebooks",
        description="Build a static website from the folder `hpdl run` wrote: the course "
        "map, one page per notebook (its executed copy, outputs included; a notebook not "
        "run or failed gets a banner saying so), the recorded figures with their hardware, "
        "the run's report. Then check every link offline. Exit status: 0 built, no broken "
        "link; 1 broken links (listed); 2 bad usage.")
    p_site.add_argument("--run", default=None, metavar="DIR",
                        help="the folder of `hpdl run` holding results.json (default: build/)")
    p_site.add_argument("--out", default=None, metavar="DIR",
                        help="the site's folder, replaced on each build (default: build/site/)")
    p_gpu = sub.add_parser(
        "gpu-check", help="on a GPU node: every notebook on CUDA, GPU tests, NCCL, peaks",
        description="Run every lesson and lab master in the full profile on CUDA, the tests "
        "marked gpu, a collective smoke test on NCCL (1 rank, and one per GPU), and check "
        "every measured peak against the GPU's data sheet (40-105 %%). Writes OUT/gpu-check.md "
        "and results/reference/<gpu>.json. Exit status: 0 all passed, 1 a part failed, 2 "
        "bad usage (e.g. no CUDA GPU).")
    p_gpu.add_argument("--out", default=None, metavar="DIR",
                       help="folder for the run and the report (default: build/gpu-check/)")
    p_gpu.add_argument("--timeout", type=float, default=600,
                       help="seconds each notebook (and the GPU tests) may run (default 600)")
    p_kernels = sub.add_parser(
        "kernels", help="compile every Numba CUDA kernel for real GPUs (no GPU needed)",
        description="Compile every Numba CUDA kernel that the lessons, lab masters and "
        "course_utils launch, with the argument types and block sizes they are launched with, "
        "for real GPU targets (NVVM to PTX, ptxas to machine code), on a machine without a "
        "GPU. Prints registers, shared memory, stack, spills and blocks per SM for each "
        "kernel and writes them as JSON. Needs the CUDA toolchain wheels (pip install -e "
        "'.[kernels]'). Exit status: 0 all compiled, 1 a kernel failed, 2 bad usage.")
    p_kernels.add_argument("paths", nargs="*", metavar="PATH",
                           help="notebooks to run on the simulator to record launches "
                           "(default: every lesson and lab master with Numba CUDA kernels)")
    p_kernels.add_argument("--launches", default=None, metavar="FILE",
                           help="use launches recorded already (a HPDL_KERNEL_LOG file, as "
                           "`make test` writes to build/kernel-launches.jsonl) instead of "
                           "running notebooks")
    p_kernels.add_argument("--cc", default="80,90",
                           help="compute capabilities, comma-separated: 80, 86, 89, 90 "
                           "(default 80,90)")
    p_kernels.add_argument("--out", default=None, metavar="FILE",
                           help="JSON output (default build/kernels.json)")
    p_kernels.add_argument("--json", action="store_true", help="print the JSON")
    p_kernels.add_argument("--reference", default=None, metavar="FILE",
                           help="fail where registers, shared memory or stack differ from "
                           "this committed table (make test: data/kernel_resources.json)")
    p_kernels.add_argument("--ptx", default=None, metavar="DIR",
                           help="also keep each kernel's PTX in DIR")
    p_colab = sub.add_parser(
        "colab", help="put the Open-in-Colab badge and the Colab guard in every notebook",
        description="Write the Open-in-Colab badge (under the title) and the Colab guard (top "
        "of the setup cell) into every notebook of lessons/ and labs/. Exit status: 0 done or "
        "up to date, 1 a notebook is stale (--check), 2 bad usage.")
    p_colab.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 if a notebook lacks them or is out of date")
    p_colab.add_argument("--repo", default=None, metavar="URL",
                         help="GitHub repository (default: pyproject.toml's [project.urls] "
                         "Repository)")
    return parser


def _cmd_env(args: argparse.Namespace) -> int:
    from ..env import report

    print(report(as_json=args.json))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import write_results
    from .runner import parse_parameter, run, summary_table

    parameters = dict(parse_parameter(name, value) for name, value in args.parameter)
    result = run(args.paths, profile=args.profile, device=args.device, out=args.out,
                 timeout=args.timeout, parameters=parameters, progress=not args.no_progress)
    out_dir = Path(args.out) if args.out else paths.BUILD_DIR
    json_path, html_path = write_results(result, out_dir)
    print(summary_table(result, html_path))
    print(f"results: {json_path}")
    return 0 if result.ok else 1


def _cmd_student(args: argparse.Namespace) -> int:
    from .grading import generate_students, master_is_current, student_is_current

    masters = sorted(paths.SOLUTIONS_DIR.glob("*.ipynb"))
    if args.check:
        stale = [f"labs/solutions/{m.name}'s nbgrader cell metadata is out of date"
                 for m in masters if not master_is_current(m)]
        stale += [f"labs/{m.name} differs from the one generated from "
                  f"labs/solutions/{m.name}" for m in masters
                  if not (paths.LABS_DIR / m.name).exists()
                  or not student_is_current(m, paths.LABS_DIR / m.name)]
        for line in stale:
            print(f"stale: {line}; run `hpdl student`")
        return 1 if stale else 0
    written = generate_students(paths.SOLUTIONS_DIR, paths.LABS_DIR)
    for path in written:
        print(f"wrote {path.relative_to(paths.REPO_ROOT)}")
    return 0


def _cmd_kernels(args: argparse.Namespace) -> int:
    from .kernels import kernels_command

    if args.launches and args.paths:
        raise UsageError("give notebooks to run or --launches FILE, not both")
    return kernels_command(launches=args.launches, targets=args.paths or None, ccs=args.cc,
                           out=args.out, as_json=args.json, reference=args.reference,
                           ptx_dir=args.ptx)


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    from .gpucheck import gpu_check, report_markdown

    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    check = gpu_check(args.out, timeout=args.timeout)
    print(report_markdown(check))
    return 0 if check.ok else 1


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grading import GradeReport, grade, grade_many, submissions_in, write_gradebook

    for flag, value in (("--timeout", args.timeout), ("--cell-timeout", args.cell_timeout)):
        if value <= 0:
            raise UsageError(f"{flag} {value}: must be a positive number of seconds")
    found = submissions_in(args.submissions)
    if len(found) == 1 and args.out is None:
        report = grade(found[0], timeout=args.timeout, profile=args.profile, seed=args.seed,
                       cell_timeout=args.cell_timeout, demos=args.demos)
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
        return 0

    def progress(result):
        if not args.json:
            print(result.table() + "\n" if isinstance(result, GradeReport)
                  else f"{result['notebook']}: not graded: {result['error']}\n", flush=True)

    results = grade_many(found, timeout=args.timeout, profile=args.profile, seed=args.seed,
                         cell_timeout=args.cell_timeout, demos=args.demos, progress=progress)
    written = write_gradebook(results, Path(args.out) if args.out else
                              paths.BUILD_DIR / "grades")
    if args.json:
        print(json.dumps([r.to_dict() if isinstance(r, GradeReport) else r for r in results],
                         indent=2))
    else:
        print("gradebook: " + ", ".join(str(p) for p in written))
    return 1 if any(not isinstance(r, GradeReport) for r in results) else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, load_results, resolve_reference

    results = load_results(args.results)
    reference = load_results(resolve_reference(args.reference, results))
    comparison = compare(results, reference, tolerance=args.tolerance)
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else comparison.table())
    return comparison.exit_status


def _cmd_site(args: argparse.Namespace) -> int:
    from .site import build_site, scan_links

    run_dir = Path(args.run) if args.run else paths.BUILD_DIR
    out_dir = Path(args.out) if args.out else paths.BUILD_DIR / "site"
    index = build_site(run_dir, out_dir)
    scan = scan_links(out_dir)
    for link in scan.broken:
        print(f"broken link: {link}")
    print(f"site: {index} ({len(scan.pages)} pages; {len(scan.broken)} broken links; "
          f"{len(scan.external)} external links, not checked)")
    return 1 if scan.broken else 0


def _cmd_colab(args: argparse.Namespace) -> int:
    from .colab import main as colab_main

    return colab_main(check=args.check, repo=args.repo)


COMMANDS = {"env": _cmd_env, "run": _cmd_run, "student": _cmd_student, "grade": _cmd_grade,
            "gpu-check": _cmd_gpu_check, "kernels": _cmd_kernels,
            "compare": _cmd_compare, "site": _cmd_site, "colab": _cmd_colab}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpdl`` console script."""
    args = _build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CourseError as exc:
        print(f"hpdl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("hpdl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpdl ... | head` closed the pipe: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is printed
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
