import nbformat
import pytest

from course_utils.checks import scoring
from course_utils.errors import CourseError
from course_utils.hpdl import grading

MASTER_CELL = """def relu(x):
    \"\"\"Keep the positive part.\"\"\"
    ### BEGIN SOLUTION
    return np.maximum(x, 0)
    ### END SOLUTION
"""


def test_strip_solutions_keeps_indentation_and_signature():
    out = grading.strip_solutions(MASTER_CELL)
    assert "np.maximum" not in out
    assert "def relu(x):" in out and "Keep the positive part" in out
    assert f"    {grading.PLACEHOLDER}" in out
    compile(out, "cell", "exec")


@pytest.mark.parametrize("source, problem", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_markers_are_reported(source, problem):
    with pytest.raises(CourseError, match=problem):
        grading.strip_solutions(source, "lab.ipynb, cell 3")


def test_student_notebook_clears_outputs_and_answers():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(MASTER_CELL)
    cell.outputs = [nbformat.v4.new_output("stream", text="hi")]
    cell.execution_count = 4
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab"), cell]
    student = grading.student_notebook(nb, "lab.ipynb")
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert "np.maximum" not in student.cells[1].source
    assert nb.cells[1].outputs, "the master itself must not be modified"


def test_check_scores_pass_fail_and_not_implemented(capsys):
    scoring.RESULTS.clear()
    with scoring.check("passes", points=2):
        pass
    with scoring.check("wrong", points=1):
        raise AssertionError("dW differs at index (0, 1)")
    with scoring.check("unfinished", points=3):
        raise NotImplementedError
    with scoring.check("crash", points=1):
        [][1]
    got = scoring.RESULTS
    assert got["passes"].points == 2 and got["passes"].passed
    assert got["wrong"].points == 0 and "dW differs" in got["wrong"].message
    assert "not implemented" in got["unfinished"].message
    assert "IndexError" in got["crash"].message
    out = capsys.readouterr().out
    assert "[PASS] passes: 2/2" in out and "[FAIL] unfinished: 0/3" in out
    scoring.summary()
    assert "score so far: 2 / 7 points over 4 checks" in capsys.readouterr().out
    with scoring.check("wrong", points=1):  # fixed and re-run: replaces, does not add
        pass
    scoring.summary()
    assert "score so far: 3 / 7 points over 4 checks" in capsys.readouterr().out


def test_check_lets_keyboard_interrupt_through():
    with pytest.raises(KeyboardInterrupt), scoring.check("x"):
        raise KeyboardInterrupt


def test_declared_checks_are_found_statically():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('with check("a", points=2):\n    pass'),
                nbformat.v4.new_code_cell('with checks.check("b"):\n    pass\n%time x = 1'),
                nbformat.v4.new_code_cell('grader.check("not a lab check")'),
                nbformat.v4.new_code_cell("def broken(:\n")]
    assert grading.declared_checks(nb) == [("a", 2.0), ("b", 1.0)]


def test_every_graded_check_of_a_master_has_a_literal_name_and_points():
    """The grader takes checks and points from the master's source: a check whose name
    is computed (an f-string) would be invisible to it."""
    import ast

    from tests.conftest import REPO

    for master in sorted((REPO / "labs" / "solutions").glob("*.ipynb")):
        nb = nbformat.read(master, as_version=4)
        calls = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                               for line in cell.source.splitlines())
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = getattr(func, "id", None) or getattr(func, "attr", None)
                    if name in grading.CHECK_CALLS and (name != "check" or isinstance(
                            func, ast.Name) or getattr(func.value, "id", "") == "checks"):
                        calls += 1
                        assert isinstance(node.args[0], ast.Constant), \
                            f"{master.name}: a check with a computed name: {ast.unparse(node)}"
        assert calls == len(grading.declared_checks(nb)) > 0, master.name
