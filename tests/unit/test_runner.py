import pytest

from course_utils import paths
from course_utils.errors import UsageError
from course_utils.hpdl import runner


@pytest.mark.parametrize("raw, value", [("3", 3), ("0.5", 0.5), ("true", True),
                                        ("relu", "relu"), ("[1, 2", "[1, 2")])
def test_parameter_values_are_typed(raw, value):
    assert runner.parse_parameter("X", raw) == ("X", value)


@pytest.mark.parametrize("name, problem", [("1x", "identifier"), ("a-b", "identifier"),
                                           ("PROFILE", "--profile"), ("DEVICE", "--device")])
def test_bad_parameter_names(name, problem):
    with pytest.raises(UsageError, match=problem):
        runner.parse_parameter(name, "1")


def test_discover_defaults_to_lessons_and_solutions():
    found = runner.discover(None)
    assert found, "the course has notebooks"
    for path in found:
        rel = path.relative_to(paths.REPO_ROOT).as_posix()
        assert rel.startswith(("lessons/", "labs/solutions/")), rel


def test_discover_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        runner.discover([str(tmp_path / "missing.ipynb")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="not a Jupyter notebook"):
        runner.discover([str(tmp_path / "notes.txt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no"):
        runner.discover([str(tmp_path / "empty")])


def test_out_dir_may_not_be_inside_sources():
    with pytest.raises(UsageError, match="refusing to write"):
        runner.run([str(paths.LESSONS_DIR)], out=paths.LESSONS_DIR / "build", progress=False)
    with pytest.raises(UsageError, match="refusing to write"):
        runner.run(None, out=paths.LABS_DIR, progress=False)


def test_run_validates_before_running(tmp_path):
    with pytest.raises(UsageError, match="--profile"):
        runner.run(None, profile="fast", out=tmp_path / "o", progress=False)
    with pytest.raises(UsageError, match="--timeout"):
        runner.run(None, timeout=0, out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_results_schema_is_documented():
    for key in ('"fingerprint"', '"profile"', '"device"', '"total_seconds"', '"notebooks"',
                '"status"', '"metrics"', '"error"'):
        assert key in runner.RESULTS_SCHEMA
