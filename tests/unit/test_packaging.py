"""The files that make a fresh clone work: kept consistent with each other."""

import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml

from tests.conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = _pyproject()
    wanted = set(project["dependencies"])
    for extra in ("dev", "mpi", "lab"):
        wanted |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {line for line in pip_section if not line.startswith("-")}
    assert listed == wanted


def test_lock_pins_every_package_exactly():
    """Every requirement that applies to the lock's Python (3.11) is pinned with ==."""
    from packaging.requirements import Requirement

    project = _pyproject()
    reqs = list(project["dependencies"])
    for extra in ("dev", "mpi", "lab"):
        reqs += project["optional-dependencies"][extra]
    lock_env = {"python_version": "3.11", "python_full_version": "3.11.7"}
    names = {_name(r) for r in reqs
             if Requirement(r).marker is None or Requirement(r).marker.evaluate(lock_env)}
    pins = {}
    for line in (REPO / "requirements/lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"lock line not pinned exactly: {line}"
            pins[_name(name)] = version
    missing = names - set(pins)
    assert not missing, f"not in requirements/lock.txt: {sorted(missing)}"
    assert "+" not in pins["torch"], "lock torch without a local tag; the index picks CPU"


def test_pyproject_declares_the_course_package():
    project = _pyproject()
    assert project["requires-python"] == ">=3.10"
    assert project["scripts"]["hpdl"] == "course_utils.hpdl.cli:main"
    assert any(r.startswith("torch>=2.7") for r in project["dependencies"])


def test_the_locked_versions_satisfy_the_declared_ranges():
    """What CI installs (the lock) is inside what pyproject.toml promises, so the ranges are
    proven at least at one point; numba-cuda is bound to the series the tests pass with."""
    from packaging.requirements import Requirement

    locked = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            locked[name.strip().lower().replace("_", "-")] = version.strip()
    checked = 0
    for text in _pyproject()["dependencies"]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name in locked:
            assert req.specifier.contains(locked[name], prereleases=True), (text, locked[name])
            checked += 1
    assert checked >= 10
    numba_cuda = next(Requirement(t) for t in _pyproject()["dependencies"]
                      if t.startswith("numba-cuda"))
    assert not numba_cuda.specifier.contains("0.31.0"), "numba-cuda needs an upper bound"


def test_the_apis_behind_the_torch_floor_exist():
    import torch
    from torch.distributed.fsdp import fully_shard  # noqa: F401 - lesson 14 (2.6 and later)

    assert hasattr(torch.distributed, "reduce_scatter_tensor")  # lesson 12


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci
    gpu = yaml.safe_load((REPO / ".github/workflows/gpu.yml").read_text())
    job = gpu["jobs"]["gpu"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    assert job["env"]["HPDL_PROFILE"] == "full" and job["env"]["NUMBA_ENABLE_CUDASIM"] == "0"
    cpu = (REPO / ".github/workflows/ci.yml").read_text()
    assert ".ci/run" in cpu


def test_readme_slurm_scripts_are_valid_bash(tmp_path):
    import subprocess

    readme = (REPO / "README.md").read_text()
    scripts = re.findall(r"```bash\n(#!/bin/bash\n#SBATCH.*?)```", readme, flags=re.S)
    assert len(scripts) >= 2, "README should show SLURM batch scripts for lab and run"
    for i, script in enumerate(scripts):
        path = tmp_path / f"job{i}.sbatch"
        path.write_text(script)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
