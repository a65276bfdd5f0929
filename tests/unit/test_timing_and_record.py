import importlib
import json
import math

import pytest

from course_utils import timing
from course_utils.errors import UsageError

# `course_utils.record` the function shadows the module of the same name on the package.
record_mod = importlib.import_module("course_utils.record")


def test_benchmark_counts_warmup_and_repeats():
    calls = []
    result = timing.benchmark(lambda: calls.append(1), warmup=3, repeats=5, sync="none")
    assert len(calls) == 8
    assert result.repeats == 5 and result.warmup == 3
    assert result.min <= result.median <= max(result.times)
    assert "median" in str(result)


def test_benchmark_rejects_zero_repeats():
    with pytest.raises(UsageError, match="repeats"):
        timing.benchmark(lambda: None, repeats=0)


def test_benchmark_alternating_runs_the_contestants_in_turn():
    calls = []
    result = timing.benchmark_alternating(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        warmup=1, repeats=3, sync="none")
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed rounds in turn
    assert set(result) == {"a", "b"}
    assert all(t.repeats == 3 and t.warmup == 1 and t.meaningful for t in result.values())


def test_benchmark_alternating_rejects_nothing_to_time_and_zero_repeats():
    with pytest.raises(UsageError, match="at least one function"):
        timing.benchmark_alternating({})
    with pytest.raises(UsageError, match="repeats"):
        timing.benchmark_alternating({"a": lambda: None}, repeats=0)


def test_benchmark_marks_simulator_timings_meaningless():
    result = timing.benchmark(lambda: None, repeats=1, sync="none", simulator=True)
    assert not result.meaningful
    assert "meaningless" in str(result)


def test_rate_helpers():
    assert timing.gflops(2e9, 2.0) == pytest.approx(1.0)
    assert timing.gbps(4e9, 2.0) == pytest.approx(2.0)
    assert timing.matmul_flop(2, 3, 4) == 48
    assert timing.format_seconds(0.0015) == "1.5 ms"


def test_record_outside_jupyter_prints_and_keeps(capsys):
    assert record_mod.record("unit_test_metric", 3, "GB/s", hardware="test box") is None
    assert record_mod.RECORDED["unit_test_metric"] == {
        "value": 3.0, "unit": "GB/s", "hardware": "test box", "meaningful": True}
    assert "unit_test_metric = 3 GB/s  (test box)" in capsys.readouterr().out


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_record_rejects_non_finite(value):
    with pytest.raises(ValueError, match="finite"):
        record_mod.record("bad", value, "s")


def test_metrics_are_gathered_from_notebook_outputs():
    payload = {"name": "bw", "value": 1.0, "unit": "GB/s", "hardware": "h", "meaningful": True}
    nb = {"cells": [{"outputs": [{"data": {"text/plain": "x"}}]},
                    {"outputs": [{"data": {record_mod.MIME: payload}}]}]}
    metrics = record_mod.metrics_from_notebook(json.loads(json.dumps(nb)))
    assert metrics == {"bw": {"value": 1.0, "unit": "GB/s", "hardware": "h",
                              "meaningful": True}}


def test_record_cpu_device_names_the_cpu_even_on_a_gpu_machine():
    record_mod.record("cpu_metric", 1, "s", device="cpu")
    assert record_mod.RECORDED["cpu_metric"]["hardware"].startswith("CPU: ")
    with pytest.raises(ValueError, match="device='tpu'"):
        record_mod.record("x", 1, "s", device="tpu")


def test_benchmark_marks_only_numba_timings_on_the_simulator(monkeypatch):
    from course_utils import cudasim

    monkeypatch.setattr(cudasim, "on_simulator", lambda: True)
    assert timing.benchmark(lambda: None, repeats=1, sync="none").meaningful
    assert not timing.benchmark(lambda: None, repeats=1, sync="numba").meaningful
