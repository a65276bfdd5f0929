"""`hpdl kernels`: launches recorded on the simulator, rebuilt and compiled for real GPUs.

The recording runs in a subprocess with the simulator on; the compilation in processes with
it off, with the CUDA toolchain wheels of the `kernels` extra (installed by `make install`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course_utils import launch_log
from course_utils.errors import UsageError
from course_utils.gpu import launch
from course_utils.hpdl import cli, kernels
from tests.conftest import REPO

# On a GPU node (simulator off) the kernels are compiled and run for real by the other
# tests, and the node may not have the toolchain wheels: only there may these be skipped.
pytestmark = pytest.mark.skipif(
    kernels.toolchain_home() is None and os.environ.get("NUMBA_ENABLE_CUDASIM") == "0",
    reason="real GPU run without the `kernels` extra: kernels compile on the GPU itself")

SCRIPT = textwrap.dedent('''
    import numpy as np
    import course_utils
    course_utils.setup("quick", "cpu", 0)
    from numba import cuda, float32

    TILE = 8
    SCALE = np.float32(0.5)

    @cuda.jit(device=True)
    def clamp(v, lo, hi):
        return min(max(v, lo), hi)

    def make_scaler(factor):
        @cuda.jit
        def scale_rows(a, out):
            buf = cuda.shared.array(TILE, float32)
            i = cuda.grid(1)
            t = cuda.threadIdx.x
            if i < a.size:
                buf[t] = a[i]
            cuda.syncthreads()
            if i < a.size:
                out[i] = clamp(buf[t] * factor * SCALE, float32(-1.0), float32(1.0))
        return scale_rows

    @cuda.jit
    def allocates(out):
        tmp = np.zeros(4, dtype=np.float32)  # the simulator runs it; CUDA cannot allocate
        i = cuda.grid(1)
        if i < out.size:
            out[i] = tmp[0]

    def host_helper(v):
        return v + 1

    @cuda.jit
    def calls_python(out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = host_helper(i)

    a = np.linspace(-3, 3, 13).astype(np.float32)   # 13: not a multiple of the block
    out = np.zeros_like(a)
    scaler = make_scaler(np.float32(4.0))
    scaler[2, TILE](a, out)
    assert np.allclose(out, np.clip(a * 2.0, -1, 1))
    scaler[2, TILE](a, out)                         # the same launch again: logged once
    make_scaler(np.float32(4.0))[2, TILE](a, out)   # a new kernel object: logged again
    try:
        scaler[2, TILE](a)  # an argument missing: the launch fails and is not logged
    except TypeError:
        pass

    @cuda.jit
    def unguarded(out):  # no bounds guard: the last block writes past the end ...
        out[cuda.grid(1)] = 1.0

    try:
        unguarded[2, 8](np.zeros(13, np.float32))
    except IndexError:  # ... which the simulator stops; the launch is logged all the same
        pass
    allocates[1, 32](np.zeros(5, np.float32))
    calls_python[1, 32](np.zeros(5, np.int64))
''')


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("launches")
    script, log = tmp / "kernels_demo.py", tmp / "launches.jsonl"
    script.write_text(SCRIPT)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", launch_log.ENV_VAR: str(log),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return log, SCRIPT


def _definitions(source: str) -> dict[str, str]:
    """The demo script's functions count as course code for these tests."""
    return {kernels._def_key(node): f"demo:{node.lineno}" for node in kernels._defs_in(source)}


def test_launches_are_logged_once_with_types_globals_and_device_functions(recorded):
    log, _ = recorded
    records = kernels.read_launches(log)
    by_name = {r["kernel"]["name"]: r for r in records}
    assert [r["kernel"]["name"] for r in records].count("scale_rows") == 2
    assert sorted(by_name) == ["allocates", "calls_python", "scale_rows", "unguarded"]
    assert len(records) == 5  # the repeated launch is not logged again, the new object is
    scale = by_name["scale_rows"]
    assert scale["args"] == [{"array": "float32", "ndim": 1, "layout": "C"}] * 2
    assert scale["block"] == [8, 1, 1] and scale["grid"] == [2, 1, 1]
    values = scale["kernel"]["globals"]
    assert values["TILE"] == {"literal": "8"}
    assert values["factor"] == {"numpy_scalar": "float32", "literal": "4.0"}  # a closure
    assert values["float32"] == {"numba_type": "float32"}
    assert values["clamp"]["device_function"]["source"].startswith("def clamp(v, lo, hi):")
    assert by_name["calls_python"]["error"].startswith("Unsupported: global 'host_helper'")


def test_nothing_is_logged_without_the_variable(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT.split("a = np.linspace")[0] + "make_scaler(2.0)\n"
                      "import course_utils.launch_log as l; assert not l._installed\n")
    env = {k: v for k, v in os.environ.items() if k != launch_log.ENV_VAR}
    env.update(NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_course_kernels_compile_for_sm80_and_sm90_and_broken_ones_fail(recorded):
    log, source = recorded
    jobs, skipped = kernels.jobs_from(kernels.read_launches(log), _definitions(source))
    assert skipped == [] and len(jobs) == 4
    rows = {(r.kernel.split(".")[-1], r.cc): r for r in kernels.compile_jobs(jobs, (80, 90))}
    for cc in (80, 90):
        good = rows["scale_rows", cc]
        assert good.ok, good.error
        assert 0 < good.registers <= 255 and good.shared_bytes == 8 * 4
        assert good.spill_stores == 0 and good.blocks == [8]
        expected = launch.occupancy_blocks_per_sm(
            8, shared_bytes=32 + 1024, registers_per_thread=good.registers,
            max_threads_per_sm=2048, max_blocks_per_sm=32,
            shared_per_sm=kernels.TARGETS[cc].shared_per_sm)
        assert good.occupancy == {"8": expected} and expected == 32  # block slots limit
        bad = rows["allocates", cc]
        assert not bad.ok and bad.registers is None
        assert "zeros" in bad.error, bad.error  # the compiler's typing error names the call
        assert rows["unguarded", cc].ok  # an out-of-bounds write compiles: only a run sees it
        unsupported = rows["calls_python", cc]
        assert not unsupported.ok and "host_helper" in unsupported.error


def test_kernels_outside_the_course_are_left_out(recorded):
    log, _ = recorded
    jobs, skipped = kernels.jobs_from(kernels.read_launches(log), {})
    assert jobs == [] and len(skipped) == 4  # scale_rows's two objects: one entry


def test_every_course_kernel_of_the_basics_module_is_found():
    definitions = kernels.course_definitions()
    wheres = set(definitions.values())
    assert any(w.startswith("course_utils/gpu/kernels/basics.py:") for w in wheres)
    assert any(w.startswith("labs/solutions/lab2_cuda_kernels.ipynb (cell ") for w in wheres)


def test_occupancy_with_registers_matches_cuda_occupancy_calculator():
    h100 = {"max_threads_per_sm": 2048, "max_blocks_per_sm": 32, "shared_per_sm": 228 * 1024}
    assert launch.occupancy_blocks_per_sm(256, registers_per_thread=32, **h100) == 8
    assert launch.occupancy_blocks_per_sm(256, registers_per_thread=64, **h100) == 4
    assert launch.occupancy_blocks_per_sm(256, registers_per_thread=72, **h100) == 3
    assert launch.occupancy_blocks_per_sm(128, registers_per_thread=255, **h100) == 2
    assert launch.occupancy_blocks_per_sm(1024, registers_per_thread=65, **h100) == 0
    assert launch.occupancy_blocks_per_sm(256, **h100) == 8  # registers not given: ignored


def test_bad_usage_is_named():
    with pytest.raises(UsageError, match="'75' is not a supported compute capability"):
        kernels.parse_ccs("80,75")
    assert kernels.parse_ccs("sm_90, 80,90") == (90, 80)
    with pytest.raises(UsageError, match="no such file"):
        kernels.read_launches("/nonexistent/launches.jsonl")


def test_a_missing_toolchain_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(kernels, "toolchain_home", lambda: None)
    status = cli.main(["kernels", "--launches", str(tmp_path / "x.jsonl")])
    assert status == 2
    assert 'pip install -e ".[kernels]"' in capsys.readouterr().err


def test_the_command_prints_the_table_writes_json_and_fails_on_a_broken_kernel(
        recorded, monkeypatch, capsys, tmp_path):
    log, source = recorded
    monkeypatch.setattr(kernels, "course_definitions", lambda: _definitions(source))
    monkeypatch.setattr(kernels, "course_kernels", lambda: {})
    monkeypatch.setattr(kernels, "gpu_only_jobs", lambda: [])
    out = tmp_path / "kernels.json"
    status = cli.main(["kernels", "--launches", str(log), "--cc", "90", "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 1
    assert "scale_rows" in printed.out and "4 kernels, 4 signatures" in printed.out
    assert "error: " in printed.err and "allocates" in printed.err
    data = json.loads(out.read_text())
    assert data["schema"] == kernels.SCHEMA and data["kernels"] == 4
    assert {r["cc"] for r in data["rows"]} == {90}


def test_a_reference_table_that_disagrees_is_reported(tmp_path):
    row = kernels.Row(kernel="k", where="x.py:1", signature="(float32[::1])", cc=90, ok=True,
                      key="abc", registers=20, shared_bytes=0, stack_bytes=0, spill_stores=0,
                      spill_loads=0, instructions={"fma": 1})
    other = kernels.Row(**{**kernels.asdict(row), "key": "def", "registers": 99})

    def table(*rows):
        path = tmp_path / f"ref{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps({"schema": kernels.SCHEMA, "rows": list(rows)}))
        return path

    # kernels compiled now but not in the table (tests' launches) are not compared
    assert kernels.compare_with_reference([row, other], table(kernels.asdict(row))) == []
    changed = {**kernels.asdict(row), "registers": 24, "instructions": {"fma": 2}}
    lines = kernels.compare_with_reference([row], table(changed))
    assert len(lines) == 2 and "registers 20 here, 24 in" in lines[0]
    gone = kernels.compare_with_reference([row], table(kernels.asdict(other)))
    assert len(gone) == 1 and "not compiled in this run" in gone[0]
    with pytest.raises(UsageError, match="no such file"):
        kernels.compare_with_reference([row], tmp_path / "missing.json")


def test_the_committed_table_serves_the_lessons():
    (saxpy,) = launch.compiled_resources("saxpy", cc=90,
                                         where="course_utils/gpu/kernels/basics.py")
    assert 0 < saxpy["registers"] <= 255 and saxpy["instructions"]["fma"] >= 1
    with pytest.raises(UsageError, match="no compiled kernel 'nope'.*saxpy"):
        launch.compiled_resources("nope")


def test_ptx_reading_helpers():
    from course_utils.gpu import profiling

    ptx = ("ld.global.f32 %f1, [%rd1];\nbar.sync 0;\nld.shared.f32 %f2, [%rd2]; // a\n"
           "fma.rn.f32 %f3, %f2, %f2, %f1;\nbar.sync 0;\nst.global.f32 [%rd3], %f3;\n"
           "// fma.rn.f32 in a comment does not count\n")
    assert profiling.count_instructions(ptx) == {
        "ld.global": 1, "st.global": 1, "ld.shared": 1, "st.shared": 0, "fma": 1,
        "bar.sync": 2, "atom": 0}
    assert profiling.ptx_between_barriers(ptx) == [
        "bar.sync 0;", "ld.shared.f32 %f2, [%rd2];", "fma.rn.f32 %f3, %f2, %f2, %f1;",
        "bar.sync 0;"]
    with pytest.raises(UsageError, match="1 bar.sync"):
        profiling.ptx_between_barriers("bar.sync 0;\n")


def test_kernels_the_simulator_cannot_run_are_compiled_from_their_declaration():
    jobs = [j for j in kernels.gpu_only_jobs() if j["kernel"]["name"] == "sum_warp_shuffle"]
    assert [j["signature"] for j in jobs] == ["(float32[::1], float32[::1])",
                                              "(float32[::1], float64[::1])"]
    rows = kernels.compile_jobs(jobs[:1], (90,))
    assert len(rows) == 1 and rows[0].ok, rows[0].error
    assert rows[0].where.startswith("course_utils/gpu/kernels/reductions.py:")
    assert rows[0].occupancy["256"] >= 1


def test_a_course_kernel_never_launched_fails_the_command(recorded, monkeypatch, capsys,
                                                          tmp_path):
    log, source = recorded
    definitions = _definitions(source)
    never = "def never(x):\n    x[0] = 1\n"
    (node,) = kernels._defs_in(never)
    monkeypatch.setattr(kernels, "course_definitions", lambda: definitions)
    monkeypatch.setattr(kernels, "course_kernels", lambda: {kernels._def_key(node): "demo:99"})
    monkeypatch.setattr(kernels, "gpu_only_jobs", lambda: [])
    monkeypatch.setattr(kernels, "compile_jobs", lambda jobs, ccs, **kw: [])
    status = cli.main(["kernels", "--launches", str(log), "--cc", "90",
                       "--out", str(tmp_path / "k.json")])
    err = capsys.readouterr().err
    assert status == 1 and "never (demo:99) (never launched) for sm_90" in err
    assert "GPU_ONLY_LAUNCHES" in err


def test_a_kernel_compiled_from_two_checkouts_is_the_same_job(recorded):
    log, source = recorded
    records = kernels.read_launches(log)
    moved = json.loads(json.dumps(records).replace(str(log.parent), "/elsewhere"))
    assert moved != records  # the device function's file is in there too
    keys = [{j["key"] for j in kernels.jobs_from(r, _definitions(source))[0]}
            for r in (records, moved)]
    assert keys[0] == keys[1] and len(keys[0]) == 4
