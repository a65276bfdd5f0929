"""``hpdl compare``: results beside a reference, verdicts, hints, choosing the reference."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from course_utils.errors import UsageError
from course_utils.hpdl import cli
from course_utils.hpdl.compare import (
    REFERENCE_DIR,
    compare,
    default_reference,
    find_hint,
    hardware_slug,
    load_results,
    resolve_reference,
    tolerance_band,
)
from course_utils.hpdl.compare_hints import ALLOWANCES, HINTS
from tests.conftest import REPO, hpdl

H100_REFERENCE = REFERENCE_DIR / "nvidia-h100-80gb-hbm3.json"
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-40GB"
NB05 = "lessons/unit1_foundations/05_hardware_and_the_dl_stack.ipynb"
NB07 = "lessons/unit2_cuda_numba/07_cuda_programming_model.ipynb"


def fingerprint(gpu: str | None = H100, count: int = 1) -> dict:
    gpus = [{"name": gpu, "memory_gib": 79.2}] * count if gpu else []
    hardware = (f"{count}x {gpu}" if count > 1 else gpu) if gpu else "CPU: AMD EPYC (2 cores)"
    return {"hardware": hardware, "gpus": gpus, "cuda_simulator": False,
            "packages": {"torch": "2.11.0", "numpy": "2.5.2"}}


def metric(value: float, unit: str = "GB/s", hardware: str = H100,
           meaningful: bool = True) -> dict:
    return {"value": value, "unit": unit, "hardware": hardware, "meaningful": meaningful}


def results(notebooks: dict[str, dict[str, dict]], *, gpu: str | None = H100,
            profile: str = "full", device: str = "cuda", failed: dict | None = None) -> dict:
    """A minimal hpdl-results/1 dict; ``failed`` maps a notebook path to its error cell."""
    failed = failed or {}
    return {
        "schema": "hpdl-results/1", "created": "2026-11-27T10:00:00+00:00",
        "fingerprint": fingerprint(gpu), "profile": profile, "device": device,
        "parameters": {}, "total_seconds": 1.0, "summary": {},
        "notebooks": [{"path": path, "status": "failed" if path in failed else "passed",
                       "metrics": metrics,
                       "error": {"cell": failed[path], "message": "boom", "traceback": ""}
                       if path in failed else None}
                      for path, metrics in notebooks.items()],
    }


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def run(tmp_path: Path, here: dict, ref: dict, tolerance: float = 2.0):
    return compare(load_results(write(tmp_path, "here.json", here)),
                   load_results(write(tmp_path, "ref.json", ref)), tolerance)


def row(comparison, name: str):
    (found,) = [r for r in comparison.rows if r.metric == name]
    return found


# ------------------------------------------------------------------ the real reference
def test_real_reference_against_itself_is_all_ok():
    ref = load_results(H100_REFERENCE)
    c = compare(ref, ref)
    assert c.rows and all(r.verdict == "ok" and r.ratio == 1.0 for r in c.rows)
    assert c.exit_status == 0 and c.note is None and c.versions is None
    assert f"{len(c.rows)} compared ({len(c.rows)} ok, 0 far off)" in c.table()
    assert default_reference(ref) == H100_REFERENCE  # picked by its own GPU


def test_reference_files_are_named_by_their_gpu_slug():
    for path in REFERENCE_DIR.glob("*.json"):
        assert path.stem == hardware_slug(load_results(path).fingerprint), path


# ------------------------------------------------------------------ verdicts
def test_within_band_is_ok_and_far_off_gets_a_hint(tmp_path):
    here = results({NB07: {"h2d_pinned_gbps": metric(3.0), "saxpy_gbps": metric(1500.0)}})
    ref = results({NB07: {"h2d_pinned_gbps": metric(25.0), "saxpy_gbps": metric(2000.0)}})
    c = run(tmp_path, here, ref)
    assert row(c, "saxpy_gbps").verdict == "ok"
    pinned = row(c, "h2d_pinned_gbps")
    assert pinned.verdict == "far off" and pinned.direction == "below"
    assert pinned.ratio == pytest.approx(0.12) and "pin_memory=True" in pinned.hint
    assert c.exit_status == 1
    text = c.table()
    assert "far off (below)" in text and "pin_memory=True" in text
    assert "2 compared (1 ok, 1 far off)" in text


def test_fp32_matmul_far_above_points_at_tf32_but_below_does_not(tmp_path):
    ref = results({"lessons/00_start_here.ipynb": {"matmul_fp32_gflops":
                                                  metric(50_000, "GFLOP/s")}})
    fast = results({"lessons/00_start_here.ipynb": {"matmul_fp32_gflops":
                                                   metric(160_000, "GFLOP/s")}})
    slow = results({"lessons/00_start_here.ipynb": {"matmul_fp32_gflops":
                                                   metric(10_000, "GFLOP/s")}})
    above = row(run(tmp_path, fast, ref), "matmul_fp32_gflops")
    assert above.direction == "above" and "allow_tf32" in above.hint
    below = row(run(tmp_path, slow, ref), "matmul_fp32_gflops")
    assert below.direction == "below" and "TF32" not in below.hint and "clocks" in below.hint


def test_hint_lookup_respects_direction_and_unknown_names():
    assert "pin_memory" in find_hint("hw_h2d_pinned_gbps", "below")[0]
    assert "AMP" in find_hint("ladder_bf16_speedup", "below")[0]
    assert find_hint("h2d_pinned_gbps", "above") == ("", True)  # faster: nothing to fix
    assert find_hint("some_new_metric", "below") == ("", True)


def test_tolerance_widens_the_band_either_way(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(310.0)}})
    ref = results({NB07: {"saxpy_gbps": metric(100.0)}})
    assert row(run(tmp_path, here, ref), "saxpy_gbps").verdict == "far off"
    for tolerance in (4, 0.25):
        assert row(run(tmp_path, here, ref, tolerance), "saxpy_gbps").verdict == "ok"
    assert tolerance_band(0.5) == tolerance_band(2) == (0.5, 2)
    for bad in (1, 0, -2, float("nan")):
        with pytest.raises(UsageError, match="--tolerance"):
            tolerance_band(bad)


def test_unit_mismatch_is_flagged_not_divided(tmp_path):
    here = results({NB07: {"acc": metric(97.0, "%"), "t_us": metric(10.0, "µs")}})
    ref = results({NB07: {"acc": metric(0.97, "fraction"), "t_us": metric(10.0, "us")}})
    c = run(tmp_path, here, ref)
    acc = row(c, "acc")
    assert acc.verdict == "unit mismatch" and acc.ratio is None
    assert "%" in acc.hint and "fraction" in acc.hint
    assert row(c, "t_us").verdict == "ok"  # µs and us are one unit
    assert c.exit_status == 1 and "1 unit mismatch" in c.summary()


@pytest.mark.parametrize("side", ["here", "reference"])
def test_not_meaningful_numbers_are_never_compared_as_speed(tmp_path, side):
    sim = metric(0.001, meaningful=False)
    real = metric(2000.0)
    here = results({NB07: {"copy_kernel_gbps": sim if side == "here" else real}})
    ref = results({NB07: {"copy_kernel_gbps": sim if side == "reference" else real}})
    c = run(tmp_path, here, ref)
    r = row(c, "copy_kernel_gbps")
    assert r.verdict == "not meaningful" and r.ratio is None and c.exit_status == 0
    assert ("here" if side == "here" else "in the reference") in r.hint
    assert "1 not meaningful" in c.summary() and "0 compared" in c.summary()


def test_error_metrics_near_zero_are_ok_whatever_the_ratio(tmp_path):
    nb = "lessons/unit3_multi_gpu/14_beyond_data_parallelism.ipynb"
    ref = results({nb: {"tp_max_abs_error": metric(1e-17, "abs")}})
    tiny = results({nb: {"tp_max_abs_error": metric(2e-16, "abs")}})
    big = results({nb: {"tp_max_abs_error": metric(1e-3, "abs")}})
    assert row(run(tmp_path, tiny, ref), "tp_max_abs_error").verdict == "ok"
    far = row(run(tmp_path, big, ref), "tp_max_abs_error")
    assert far.verdict == "far off" and "numerical" in far.hint


# ------------------------------------------------------------------ missing metrics
def test_missing_metric_on_either_side(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(2000.0), "new_gbps": metric(1.0)}},
                   failed={})
    ref = results({NB07: {"saxpy_gbps": metric(2000.0), "h2d_pinned_gbps": metric(25.0)}})
    c = run(tmp_path, here, ref)
    assert row(c, "new_gbps").verdict == "missing in reference"
    gone = row(c, "h2d_pinned_gbps")
    assert gone.verdict == "missing here" and gone.value is None and gone.reference == 25.0
    assert "not recorded here" in gone.hint
    assert c.exit_status == 0  # missing numbers are reported, not failed
    assert "2 missing (1 here, 1 in the reference)" in c.table()


def test_missing_here_because_the_notebook_failed(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(2000.0)}}, failed={NB07: 12})
    ref = results({NB07: {"saxpy_gbps": metric(2000.0), "h2d_pinned_gbps": metric(25.0)}})
    gone = row(run(tmp_path, here, ref), "h2d_pinned_gbps")
    assert gone.verdict == "missing here" and "failed in cell 12" in gone.hint


def test_whole_notebooks_missing_are_summed_up_in_one_line(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(2000.0)},
                    NB05: {"hw_copy_bandwidth_gbps": metric(3000.0)}})
    ref = results({NB07: {"saxpy_gbps": metric(2000.0)},
                   "lessons/00_start_here.ipynb": {"matmul_fp32_gflops": metric(5e4, "GFLOP/s"),
                                                   "cuda_add_one_kernel_us": metric(40, "us")}})
    c = run(tmp_path, here, ref)
    text = c.table()
    assert "notebooks in the reference but not run here (2 metrics): 00_start_here" in text
    assert ("notebooks with no reference (1 metrics): 05_hardware_and_the_dl_stack" in text)
    assert "matmul_fp32_gflops" not in text  # summed up, not listed
    data = c.to_dict()
    assert data["notebooks_missing_here"] == ["lessons/00_start_here.ipynb"]
    assert data["notebooks_missing_in_reference"] == [NB05]
    assert data["summary"]["missing here"] == 2


def test_metrics_match_by_name_when_the_paths_differ(tmp_path):
    # a run made outside the repository stores bare notebook names
    here = results({"07_cuda_programming_model.ipynb": {"saxpy_gbps": metric(2000.0)},
                    "elsewhere.ipynb": {"blur_gbps": metric(100.0)}})
    ref = results({NB07: {"saxpy_gbps": metric(2000.0), "blur_gbps": metric(100.0)}})
    c = run(tmp_path, here, ref)
    assert row(c, "saxpy_gbps").matched_by == "notebook and name"  # same file name
    blur = row(c, "blur_gbps")
    assert blur.matched_by == "name" and blur.verdict == "ok" and blur.reference_notebook == NB07


def test_an_ambiguous_name_is_not_matched_across_notebooks(tmp_path):
    here = results({"a.ipynb": {"x_gbps": metric(1.0)}})
    ref = results({"b.ipynb": {"x_gbps": metric(1.0)}, "c.ipynb": {"x_gbps": metric(1.0)}})
    verdicts = sorted(r.verdict for r in run(tmp_path, here, ref).rows)
    assert verdicts == ["missing here", "missing here", "missing in reference"]


# ------------------------------------------------------------------ other hardware
def test_different_gpu_is_one_clear_line_not_an_error(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(600.0, hardware=A100),
                           "spirals_test_accuracy": metric(0.3, "fraction", hardware=A100)}},
                   gpu=A100)
    ref = results({NB07: {"saxpy_gbps": metric(2000.0),
                          "spirals_test_accuracy": metric(0.99, "fraction")}})
    c = run(tmp_path, here, ref)
    first = c.table().splitlines()[0]
    assert first == (f"note: results from {A100} (full profile, cuda) compared with a "
                     f"reference from {H100} (full profile, cuda): ratios show the hardware "
                     "difference, not a problem")
    saxpy = row(c, "saxpy_gbps")
    assert saxpy.verdict == "far off" and saxpy.hint.startswith("different hardware")
    # accuracy does not depend on the hardware: its own hint stays
    assert "seed" in row(c, "spirals_test_accuracy").hint


def test_cpu_run_against_a_gpu_reference_names_every_difference(tmp_path):
    cpu = "CPU: AMD EPYC (2 cores)"
    here = results({NB07: {"saxpy_gbps": metric(5.0, hardware=cpu)}}, gpu=None,
                   profile="quick", device="cpu")
    here["fingerprint"]["packages"]["torch"] = "2.13.0+cpu"
    here["fingerprint"]["cuda_simulator"] = True
    c = run(tmp_path, here, results({NB07: {"saxpy_gbps": metric(2000.0)}}))
    assert c.note.startswith(f"note: results from {cpu} (quick profile, cpu)")
    assert "the hardware, device and profile difference, not a problem" in c.note
    assert "torch 2.13.0+cpu (reference 2.11.0)" in c.versions and "simulator" in c.versions


def test_same_gpu_model_with_another_count_is_noted(tmp_path):
    here = results({NB07: {"saxpy_gbps": metric(2000.0)}})
    here["fingerprint"] = fingerprint(H100, count=8)
    c = run(tmp_path, here, results({NB07: {"saxpy_gbps": metric(2000.0)}}))
    assert "GPU count" in c.note


# ------------------------------------------------------------------ choosing a reference
def test_slugs():
    assert hardware_slug(fingerprint(H100)) == "nvidia-h100-80gb-hbm3"
    assert hardware_slug(fingerprint(H100, count=8)) == "nvidia-h100-80gb-hbm3"
    assert hardware_slug(fingerprint(A100)) == "nvidia-a100-sxm4-40gb"
    assert hardware_slug(fingerprint(None)) == "cpu-amd-epyc-2-cores"


def test_default_reference_by_file_name_or_by_fingerprint(tmp_path):
    refs = tmp_path / "reference"
    refs.mkdir()
    here = load_results(write(tmp_path, "here.json", results({}, gpu=A100)))
    odd_name = write(refs, "my-a100.json", results({}, gpu=A100))
    assert default_reference(here, refs) == odd_name
    by_slug = write(refs, "nvidia-a100-sxm4-40gb.json", results({}, gpu=A100))
    assert default_reference(here, refs) == by_slug
    assert resolve_reference("my-a100", here, refs) == odd_name  # a name in the folder
    assert resolve_reference(str(odd_name), here, refs) == odd_name  # a file


def test_no_reference_for_this_gpu_lists_the_ones_there_are(tmp_path):
    refs = tmp_path / "reference"
    refs.mkdir()
    write(refs, "nvidia-h100-80gb-hbm3.json", results({}))
    here = load_results(write(tmp_path, "here.json", results({}, gpu=A100)))
    with pytest.raises(UsageError) as err:
        default_reference(here, refs)
    message = str(err.value)
    assert "no reference for NVIDIA A100-SXM4-40GB" in message
    assert "nvidia-a100-sxm4-40gb.json does not exist" in message
    assert f"hpdl compare {here.path} nvidia-h100-80gb-hbm3" in message
    with pytest.raises(UsageError, match="no reference results in"):
        default_reference(here, tmp_path / "empty")
    with pytest.raises(UsageError, match="references: nvidia-h100-80gb-hbm3"):
        resolve_reference("nvidia-t4", here, refs)


# ------------------------------------------------------------------ bad files
@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("{ not json", "not JSON"),
    ('{"schema": "something-else"}', "'something-else'"),
    ("[1, 2]", "not an `hpdl run` results file"),
    ('{"schema": "hpdl-results/1", "notebooks": {}}', "'notebooks' is not a list"),
    ('{"schema": "hpdl-results/1", "notebooks": [{"path": "a.ipynb", '
     '"metrics": {"m": {"value": "fast", "unit": "x"}}}]}', "metric 'm' of a.ipynb"),
])
def test_bad_results_files(tmp_path, content, expected):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=re.escape(expected)):
        load_results(path)


def test_a_folder_means_its_results_json(tmp_path):
    write(tmp_path, "results.json", results({}))
    assert load_results(tmp_path).path == tmp_path / "results.json"


# ------------------------------------------------------------------ the CLI
def test_cli_exit_0_on_the_real_reference(capsys):
    assert cli.main(["compare", str(H100_REFERENCE)]) == 0  # default reference: itself
    out = capsys.readouterr().out
    assert "matmul_fp32_gflops" in out and "0 far off" in out


def test_cli_exit_1_when_far_off_and_json(tmp_path, capsys):
    here = write(tmp_path, "here.json", results({NB07: {"h2d_pinned_gbps": metric(3.0)}}))
    ref = write(tmp_path, "ref.json", results({NB07: {"h2d_pinned_gbps": metric(25.0)}}))
    assert cli.main(["compare", str(here), str(ref)]) == 1
    assert "pin_memory=True" in capsys.readouterr().out
    assert cli.main(["compare", str(here), str(ref), "--tolerance", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "hpdl-compare/1" and data["exit_status"] == 0
    assert data["band"] == [0.1, 10] and data["rows"][0]["verdict"] == "ok"


@pytest.mark.parametrize("args, expected", [
    (["missing.json"], "no such file"),
    (["{ref}", "nvidia-t4"], "nvidia-t4: no such file"),
    (["{ref}", "{ref}", "--tolerance", "1"], "--tolerance"),
])
def test_cli_bad_usage_exits_2(capsys, args, expected):
    args = [a.replace("{ref}", str(H100_REFERENCE)) for a in args]
    assert cli.main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpdl compare: error:") and expected in err[0]


def test_cli_no_reference_for_a_cpu_run_exits_2_in_a_subprocess(tmp_path):
    here = write(tmp_path, "results.json", results({}, gpu=None, device="cpu"))
    result = hpdl("compare", str(here))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no reference for CPU: AMD EPYC (2 cores)" in lines[0]
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ hints cannot rot
_RECORD = re.compile(r"""\brecord\(\s*(f?)(["'])([^"'\n]+)\2""")


@cache
def recorded_name_patterns() -> tuple[str, ...]:
    """Every metric name a lesson or lab records: literal names as they are, f-string
    names with each ``{...}`` turned into ``*``."""
    found: set[str] = set()
    for path in [*REPO.glob("lessons/**/*"), *REPO.glob("labs/**/*")]:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        elif path.suffix == ".py":
            text = path.read_text(encoding="utf-8")
        else:
            continue
        for is_f, _, name in _RECORD.findall(text):
            found.add(re.sub(r"\{[^{}]*\}", "*", name) if is_f else name)
    return tuple(sorted(found))


def globs_overlap(a: str, b: str) -> bool:
    """Whether some string matches both ``*``-only glob patterns ``a`` and ``b``."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and (go(i + 1, j) or j < len(b) and go(i, j + 1)):
            return True
        if j < len(b) and b[j] == "*" and (go(i, j + 1) or i < len(a) and go(i + 1, j)):
            return True
        return i < len(a) and j < len(b) and a[i] == b[j] != "*" and go(i + 1, j + 1)

    return go(0, 0)


def test_glob_overlap_helper():
    assert globs_overlap("*h2d_pinned*", "hw_h2d_*_gbps")
    assert globs_overlap("ladder_bf16_speedup", "ladder_*_speedup")
    assert not globs_overlap("*_accuracy", "hw_*_gbps")
    assert not globs_overlap("h2d_pinned_gbps", "h2d_pageable_gbps")


def test_every_hint_pattern_matches_a_recorded_metric():
    names = recorded_name_patterns()
    assert "h2d_pinned_gbps" in names and "hw_h2d_*_gbps" in names  # the scan works
    patterns = [(p, "hint") for h in HINTS for p in h.patterns]
    patterns += [(p, "allowance") for a in ALLOWANCES for p in a.patterns]
    for pattern, kind in patterns:
        assert set(pattern) & set("?[]") == set(), f"{kind} {pattern!r}: use only '*'"
        assert any(globs_overlap(pattern, name) for name in names), (
            f"{kind} pattern {pattern!r} matches no metric that lessons/ or labs/ record")
    for hint in HINTS:
        assert hint.direction in ("below", "above", "either") and hint.text
