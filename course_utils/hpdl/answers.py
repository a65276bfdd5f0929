"""A submission's answers, and the notebook that grades them: the master with the answers in.

The grader trusts nothing of a submission but its answers. The master (in
``labs/solutions/``) marks each answer with ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
the student notebook ``hpdl student`` made from it keeps every cell's id and has
``# YOUR CODE HERE`` + ``raise NotImplementedError(...)`` where each answer goes. For each
master cell with answers, the submission's cell of the same id is aligned line by line
with that student template: the lines between the nearest unchanged given lines around a
placeholder are the answer. The graded notebook is then the master, its given code,
checks and points, with each solution region replaced by the submission's answer.

So deleting, emptying, editing or reordering check cells, editing points or given code
changes nothing. A missing answer cell, or an answer that does not parse, becomes a
``raise NotImplementedError`` that names the cell: the checks that need it score 0 with
that message, the others are unaffected.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..errors import CourseError, UsageError

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("Lab answer: write your code here")'
YOUR_CODE = "# YOUR CODE HERE"


def _python(source: str) -> str:
    """A cell's source with IPython magics and shell lines blanked (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def regions(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, indentation) of each BEGIN..END block, 0-based, inclusive."""
    found, start, indent = [], None, ""
    for number, line in enumerate(source.splitlines()):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            start, indent = number, line[: len(line) - len(line.lstrip())]
        elif stripped.startswith(END) and start is not None:
            found.append((start, number, indent))
            start = None
    return found


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION block of ``source`` by a NotImplementedError."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise CourseError(f"{where}, line {number}: {BEGIN} inside another solution")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{YOUR_CODE}")
            out.append(f"{indent}{PLACEHOLDER}")
        elif stripped.startswith(END):
            if not inside:
                raise CourseError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise CourseError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def template(source: str) -> list[str]:
    """The student version of a master cell, as lines (what ``hpdl student`` writes)."""
    return strip_solutions(source).splitlines()


def extract(master_source: str, submitted: str) -> list[str]:
    """The submission's code for each solution region of a master cell.

    The template's given lines that the submission kept unchanged are anchors; the lines
    between the anchors around a placeholder are its answer (the placeholder itself when
    the student left it: the answer still raises NotImplementedError).
    """
    tmpl = template(master_source)
    sub = submitted.splitlines()
    mapped: dict[int, int] = {}  # template line -> submission line, for unchanged lines
    matcher = difflib.SequenceMatcher(a=tmpl, b=sub, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            mapped[block.a + k] = block.b + k
    placeholders = [i for i, line in enumerate(tmpl) if line.strip() == YOUR_CODE
                    and i + 1 < len(tmpl) and tmpl[i + 1].strip() == PLACEHOLDER]
    answers = []
    for p in placeholders:
        before = max((i for i in mapped if i < p), default=None)
        after = min((i for i in mapped if i > p + 1), default=None)
        start = mapped[before] + 1 if before is not None else 0
        stop = mapped[after] if after is not None else len(sub)
        answers.append("\n".join(sub[start:stop]))
    return answers


def solutions(master_source: str) -> list[str]:
    """The master's own answer for each solution region (the lines between the markers)."""
    lines = master_source.splitlines()
    return ["\n".join(lines[start + 1:stop]) for start, stop, _ in regions(master_source)]


def fill(student_source: str, answers: list[str]) -> str:
    """A student cell with its placeholders replaced by ``answers``, in order (what a
    student who wrote them would submit)."""
    lines = student_source.splitlines()
    out, k, i = [], 0, 0
    while i < len(lines):
        if lines[i].strip() == YOUR_CODE and i + 1 < len(lines) \
                and lines[i + 1].strip() == PLACEHOLDER:
            out += answers[k].splitlines()
            k, i = k + 1, i + 2
        else:
            out.append(lines[i])
            i += 1
    if k != len(answers):
        raise ValueError(f"{len(answers)} answers for {k} placeholders")
    return "\n".join(out)


def assemble(master_source: str, answers: list[str]) -> str:
    """The master cell with its solution regions replaced by ``answers``, in order."""
    lines = master_source.splitlines()
    out, last = [], 0
    for (start, stop, _indent), answer in zip(regions(master_source), answers, strict=True):
        out += lines[last:start]
        out += answer.splitlines() if answer.strip() else []
        last = stop + 1
    out += lines[last:]
    return "\n".join(out)


def raising(master_source: str, reason: str) -> str:
    """The master cell with every solution region replaced by a NotImplementedError that
    says ``reason`` (an answer missing, not parsing, hanging or crashing the kernel)."""
    answers = [f"{indent}raise NotImplementedError({reason!r})"
               for _s, _e, indent in regions(master_source)]
    return assemble(master_source, answers)


@dataclass
class AnswerCell:
    """One master cell with solution regions, and what the submission gave for it."""

    cell_id: str
    master_index: int
    source: str                  # the graded source: the master with the answers in
    submitted_index: int | None  # where the submission has it (None: missing)
    problem: str = ""            # why the answer could not be used as it is


@dataclass
class Answers:
    """What the grader takes from a submission."""

    lab: str                                   # the master's file name
    cells: dict[int, AnswerCell] = field(default_factory=dict)  # by master index

    @property
    def problems(self) -> list[str]:
        return [c.problem for c in self.cells.values() if c.problem]


def answer_cells(master: Any) -> list[int]:
    """Indices of the master's code cells that hold solution regions."""
    return [i for i, c in enumerate(master.cells)
            if c.cell_type == "code" and regions(c.source)]


def take_answers(master: Any, lab: str, submission: Any) -> Answers:
    """Every answer of ``submission`` for the master ``lab``, ready to run in the master."""
    by_id = {c.get("id"): (i, c) for i, c in enumerate(submission.cells) if c.get("id")}
    taken = Answers(lab)
    for index in answer_cells(master):
        cell = master.cells[index]
        cid = cell.get("id")
        if cid not in by_id or by_id[cid][1].cell_type != "code":
            reason = (f"the answer cell {cid!r} (cell {index} of the lab) is missing from the "
                      "notebook: do not delete or re-create answer cells")
            taken.cells[index] = AnswerCell(cid, index, raising(cell.source, reason), None,
                                            reason)
            continue
        sub_index, sub_cell = by_id[cid]
        answers = extract(cell.source, sub_cell.source)
        graded = assemble(cell.source, answers)
        problem = ""
        try:
            ast.parse(_python(graded))
        except SyntaxError as exc:
            line = (exc.lineno or 0)
            problem = (f"your answer in cell {sub_index} does not parse: {exc.msg} (line "
                       f"{line} of the graded cell: {exc.text.strip() if exc.text else ''})")
            graded = raising(cell.source, problem)
        taken.cells[index] = AnswerCell(cid, index, graded, sub_index, problem)
    return taken


def identify_lab(submission: Any, solutions_dir: Path) -> tuple[str, Any]:
    """(file name, master notebook) of the lab a submission belongs to.

    By the ``hpdl.generated_from`` metadata ``hpdl student`` writes, else by the cell ids
    it shares with each master. A notebook that matches no master is a UsageError.
    """
    masters = {p.name: p for p in sorted(Path(solutions_dir).glob("*.ipynb"))}
    if not masters:
        raise UsageError(f"{solutions_dir}: no lab masters (*.ipynb) to grade against")
    origin = (submission.get("metadata", {}).get("hpdl", {}) or {}).get("generated_from", "")
    name = Path(origin).name if origin else ""
    ids = {c.get("id") for c in submission.cells if c.get("id")}
    if name not in masters:
        overlap = {n: len(ids & {c.get("id") for c in nbformat.read(p, as_version=4).cells})
                   for n, p in masters.items()}
        name = max(overlap, key=overlap.get)
        if overlap[name] == 0:
            raise UsageError("this notebook is not a lab of the course: none of its cells "
                             f"comes from a lab in {solutions_dir.name}/ (labs: "
                             f"{', '.join(masters)}); grade the student notebook you were given")
    master = nbformat.read(masters[name], as_version=4)
    answer_ids = {master.cells[i].get("id") for i in answer_cells(master)}
    if not ids & answer_ids:
        raise UsageError(f"this notebook has none of the answer cells of {name} (it "
                         "belongs to another lab, or its cells were re-created)")
    return name, master
