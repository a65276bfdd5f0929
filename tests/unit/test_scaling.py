import numpy as np
import pytest

from course_utils.errors import UsageError
from course_utils.training import scaling


def test_amdahl_textbook_values():
    assert scaling.amdahl_speedup(1, 0.3) == pytest.approx(1.0)
    assert scaling.amdahl_speedup(4, 0.0) == pytest.approx(4.0)
    assert scaling.amdahl_speedup(1000, 1.0) == pytest.approx(1.0)
    # f = 5 %: at most 20x, and 16 workers give 1 / (0.05 + 0.95 / 16) = 9.14x
    assert scaling.amdahl_speedup(16, 0.05) == pytest.approx(9.1429, rel=1e-4)
    assert scaling.amdahl_speedup(1e9, 0.05) == pytest.approx(20.0, rel=1e-6)
    out = scaling.amdahl_speedup([1, 2, 4], 0.5)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [1.0, 4 / 3, 1.6])


def test_gustafson_grows_without_ceiling():
    np.testing.assert_allclose(scaling.gustafson_speedup([1, 2, 64], 0.2),
                               [1.0, 1.8, 0.2 + 0.8 * 64])
    assert scaling.gustafson_speedup(8, 0.0) == pytest.approx(8.0)
    assert scaling.gustafson_speedup(8, 1.0) == pytest.approx(1.0)


def test_speedup_efficiency_and_weak_efficiency():
    assert scaling.speedup(8.0, 2.0) == pytest.approx(4.0)
    assert isinstance(scaling.speedup(8.0, 2.0), float)
    np.testing.assert_allclose(scaling.speedup(8.0, [8.0, 4.0, 2.5]), [1.0, 2.0, 3.2])
    np.testing.assert_allclose(scaling.strong_scaling_efficiency([1.0, 1.8, 3.2], [1, 2, 4]),
                               [1.0, 0.9, 0.8])
    np.testing.assert_allclose(scaling.weak_scaling_efficiency(1.0, [1.0, 1.25, 2.0]),
                               [1.0, 0.8, 0.5])


@pytest.mark.parametrize("true_fraction", [0.0, 0.02, 0.137, 0.5, 0.9])
def test_fit_recovers_a_known_serial_fraction(true_fraction):
    workers = np.array([1, 2, 4, 8, 16, 32, 64])
    exact = scaling.amdahl_speedup(workers, true_fraction)
    assert scaling.fit_amdahl(workers, exact) == pytest.approx(true_fraction, abs=1e-6)


def test_fit_recovers_the_fraction_from_noisy_measurements():
    rng = np.random.default_rng(0)
    workers = np.repeat([1, 2, 4, 8, 16], 5)  # five noisy repeats per count
    noisy = scaling.amdahl_speedup(workers, 0.1) * rng.normal(1.0, 0.03, workers.size)
    assert scaling.fit_amdahl(workers, noisy) == pytest.approx(0.1, abs=0.02)


def test_fit_is_bounded_to_zero_and_one():
    assert scaling.fit_amdahl([1, 2, 4], [1.0, 2.5, 5.5]) == pytest.approx(0.0, abs=1e-6)
    assert scaling.fit_amdahl([1, 2, 4], [1.0, 0.7, 0.5]) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= scaling.fit_amdahl([1, 2], [1.0, 1.0]) <= 1.0


def test_two_points_fit_exactly():  # 2 workers, speed-up 1.6: 1/1.6 = f + (1-f)/2 -> 0.25
    assert scaling.fit_amdahl([1, 2], [1.0, 1.6]) == pytest.approx(0.25, abs=1e-6)
    assert scaling.fit_amdahl([2], [1.6]) == pytest.approx(0.25, abs=1e-6)


def test_karp_flatt_is_constant_for_an_amdahl_program():
    workers = np.array([2, 4, 8, 16])
    np.testing.assert_allclose(
        scaling.karp_flatt(workers, scaling.amdahl_speedup(workers, 0.07)), 0.07)


@pytest.mark.parametrize("max_workers, expected", [
    (1, [1]), (2, [1, 2]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]),
])
def test_worker_counts_are_powers_of_two_plus_the_maximum(max_workers, expected):
    assert scaling.worker_counts(max_workers) == expected


@pytest.mark.parametrize("call, match", [
    (lambda: scaling.amdahl_speedup(0, 0.1), r"workers=0 .* >= 1"),
    (lambda: scaling.amdahl_speedup(4, 1.5), r"serial_fraction=1.5 .*\[0, 1\]"),
    (lambda: scaling.gustafson_speedup(4, -0.1), r"serial_fraction=-0.1"),
    (lambda: scaling.gustafson_speedup([1, 0.5], 0.1), r"workers=\[1, 0.5\]"),
    (lambda: scaling.speedup(0.0, 1.0), r"t1=0.0 .* > 0"),
    (lambda: scaling.speedup(1.0, [1.0, -2.0]), r"tp=.* every value must be > 0"),
    (lambda: scaling.strong_scaling_efficiency(2.0, 0), r"workers=0"),
    (lambda: scaling.strong_scaling_efficiency([1.0, 2.0], [1, 2, 4]), r"same length"),
    (lambda: scaling.weak_scaling_efficiency(1.0, float("nan")), r"tp=nan .* finite"),
    (lambda: scaling.fit_amdahl([1, 1], [1.0, 1.0]), r"workers=\[1, 1\] .* > 1"),
    (lambda: scaling.fit_amdahl([1, 2], [1.0]), r"same length"),
    (lambda: scaling.fit_amdahl([1, 2], [1.0, 0.0]), r"speedups=.* > 0"),
    (lambda: scaling.fit_amdahl([], []), r"workers=\[\] .* empty"),
    (lambda: scaling.karp_flatt([1, 2], [1.0, 1.5]), r"workers=\[1, 2\] .* > 1"),
    (lambda: scaling.worker_counts(0), r"max_workers=0 .* integer >= 1"),
    (lambda: scaling.worker_counts(3, limit=2, name="MAX_THREADS"),
     r"MAX_THREADS=3 .* from 1 to 2"),
    (lambda: scaling.worker_counts(2.5), r"max_workers=2.5"),
    (lambda: scaling.check_fraction("SERIAL_SHARE", 1.0, allow_one=False),
     r"SERIAL_SHARE=1.0 .*\[0, 1\)"),
    (lambda: scaling.check_fraction("SERIAL_SHARE", "a lot"), r"SERIAL_SHARE='a lot'"),
    (lambda: scaling.plot_amdahl([1, 2], [1.0, 1.5], 2.0), r"serial_fraction=2.0"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(UsageError, match=match):
        call()


def test_check_fraction_accepts_the_range():
    assert scaling.check_fraction("f", 0) == 0.0
    assert scaling.check_fraction("f", 1) == 1.0
    assert scaling.check_fraction("f", 0.25, allow_one=False) == 0.25


def test_plot_amdahl_draws_measured_fit_ideal_and_extrapolation():
    import matplotlib.pyplot as plt  # the Agg backend: tests/conftest.py sets MPLBACKEND

    fig, ax = plt.subplots()
    workers = [1, 2, 4]
    out = scaling.plot_amdahl(workers, scaling.amdahl_speedup(workers, 0.2), ax=ax,
                              hardware="test CPU", extrapolate_to=64)
    assert out is ax
    labels = [line.get_label() for line in ax.get_lines()]
    assert "ideal (S = p)" in labels and "measured" in labels
    assert "Amdahl, f = 0.200" in labels  # fitted, since no serial_fraction was given
    assert any("extrapolated to 64" in label for label in labels)
    assert any("ceiling 1/f = 5" in label for label in labels)
    assert "test CPU" in ax.get_title()
    plt.close(fig)
