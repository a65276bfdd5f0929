"""The ``hpdl`` command: ``env``, ``run``, ``student``, ``grade``.

Exit status: 0 success, 1 some notebook failed (``run``) or the student notebooks are out
of date (``student --check``), 2 bad usage (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import paths
from .errors import CourseError


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

    p_grade = sub.add_parser("grade", help="execute a lab submission and score its checks")
    p_grade.add_argument("submission", help="the student's .ipynb")
    p_grade.add_argument("--json", action="store_true", help="print JSON")
    p_grade.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    p_grade.add_argument("--profile", default="quick", choices=("quick", "full"),
                         help="sizes the checks use (default quick)")
    return parser


def _cmd_env(args: argparse.Namespace) -> int:
    from .env import report

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
    from .labs import generate_students, student_is_current

    masters = sorted(paths.SOLUTIONS_DIR.glob("*.ipynb"))
    if args.check:
        stale = [m.name for m in masters
                 if not (paths.LABS_DIR / m.name).exists()
                 or not student_is_current(m, paths.LABS_DIR / m.name)]
        for name in stale:
            print(f"stale: labs/{name} differs from the one generated from "
                  f"labs/solutions/{name}; run `hpdl student`")
        return 1 if stale else 0
    written = generate_students(paths.SOLUTIONS_DIR, paths.LABS_DIR)
    for path in written:
        print(f"wrote {path.relative_to(paths.REPO_ROOT)}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from .labs import grade

    report = grade(Path(args.submission), timeout=args.timeout, profile=args.profile)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


COMMANDS = {"env": _cmd_env, "run": _cmd_run, "student": _cmd_student, "grade": _cmd_grade}


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
