import hashlib
import re

import numpy as np
import pytest

from course_utils import data
from course_utils.errors import UsageError
from tests.conftest import REPO


def test_two_spirals_shapes_balance_and_determinism():
    X, y = data.two_spirals(n_per_class=101, seed=3)
    assert X.shape == (202, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [101, 101]
    X2, y2 = data.two_spirals(n_per_class=101, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert np.abs(X).max() < 2


@pytest.mark.parametrize("kwargs, name", [({"n_per_class": 0}, "n_per_class"),
                                          ({"noise": -1}, "noise")])
def test_two_spirals_rejects_bad_sizes(kwargs, name):
    with pytest.raises(UsageError, match=name):
        data.two_spirals(**kwargs)


def test_split_and_minibatches_cover_everything_once():
    X = np.arange(23, dtype=np.float32).reshape(-1, 1)
    y = np.arange(23)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, test_fraction=0.3, seed=0)
    assert len(yte) == 7 and sorted(np.concatenate([ytr, yte]).tolist()) == list(range(23))
    seen = np.concatenate([b for _, b in data.minibatches(X, y, 5, np.random.default_rng(0))])
    assert sorted(seen.tolist()) == list(range(23))
    with pytest.raises(UsageError, match="batch_size"):
        next(data.minibatches(X, y, 0, np.random.default_rng(0)))


def test_every_shipped_data_file_has_provenance_and_checksum():
    """data/README.md lists each shipped file with its SHA-256 (`sha256: <hex>`)."""
    readme = (REPO / "data/README.md").read_text()
    for path in sorted((REPO / "data").rglob("*")):
        if path.is_dir() or path.name == "README.md":
            continue
        rel = path.relative_to(REPO / "data").as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert re.search(rf"`{re.escape(rel)}`.*sha256: {digest}", readme), \
            f"data/{rel}: add its provenance and `sha256: {digest}` to data/README.md"


def test_plots_draw_on_given_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils import plots

    X, y = data.two_spirals(n_per_class=20, seed=0)
    fig, axes = plt.subplots(1, 3)
    assert plots.scatter(X, y, ax=axes[0], title="s") is axes[0]
    ax = plots.decision_boundary(lambda g: (g[:, 0] > 0).astype(int), X, y, ax=axes[1],
                                 resolution=20)
    assert ax.get_xlabel() == "$x_1$" and ax.collections
    plots.curves({"loss": [3, 2, 1]}, ax=axes[2], logy=True)
    assert axes[2].get_yscale() == "log" and len(axes[2].lines) == 1
    plt.close(fig)


@pytest.mark.parametrize("name", data.PLAYGROUND_DATASETS)
def test_playground_sets_are_balanced_deterministic_and_in_range(name):
    X, y = data.playground(name, n=301, noise=0.1, seed=4)
    assert X.shape == (301, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert abs(int(np.bincount(y)[1]) - 150) <= 40
    assert np.abs(X).max() < 9
    X2, y2 = data.playground(name, n=301, noise=0.1, seed=4)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_playground_labels_follow_their_rule_without_noise():
    X, y = data.playground("xor", n=200)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] >= 0).astype(int))
    X, y = data.playground("circle", n=200)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius[y == 1].max() < radius[y == 0].min()


@pytest.mark.parametrize("kwargs, name", [({"name": "moons"}, "dataset"),
                                          ({"name": "xor", "noise": 0.9}, "noise"),
                                          ({"name": "xor", "n": 0}, "n")])
def test_playground_rejects_bad_arguments(kwargs, name):
    with pytest.raises(UsageError, match=name):
        data.playground(**kwargs)


def test_playground_features():
    X = np.array([[1.0, 2.0], [-0.5, 3.0]], dtype=np.float32)
    F = data.playground_features(X, ["x1", "x1*x2", "x2^2", "sin(x1)"])
    np.testing.assert_allclose(F, [[1, 2, 4, np.sin(1)], [-0.5, -1.5, 9, np.sin(-0.5)]],
                               rtol=1e-6)
    with pytest.raises(UsageError, match="feature"):
        data.playground_features(X, ["x3"])
    with pytest.raises(UsageError, match="features"):
        data.playground_features(X, [])


def test_digits_bundled_and_scaled():
    Xtr, Xte, ytr, yte = data.digits(seed=0)
    assert Xtr.shape[1:] == (1, 8, 8) and len(ytr) + len(yte) == 1797
    assert 0 <= Xtr.min() and Xtr.max() <= 1 and set(np.unique(ytr)) == set(range(10))


def test_mnist1d_generated_locally_and_cached(monkeypatch, tmp_path):
    import course_utils.paths as paths

    monkeypatch.setattr(paths, "BUILD_DIR", tmp_path)
    Xtr, Xte, ytr, yte = data.mnist1d()
    assert Xtr.shape == (4000, 40) and Xte.shape == (1000, 40) and Xtr.dtype == np.float32
    assert set(np.unique(ytr)) == set(range(10))
    assert (tmp_path / "data/mnist1d_seed42.npz").exists()
    again = data.mnist1d()
    np.testing.assert_array_equal(again[0], Xtr)


def test_more_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils import plots

    fig, axes = plt.subplots(1, 4)
    plots.confusion(np.array([[3, 1], [0, 4]]), ax=axes[0])
    assert len(axes[0].texts) == 4
    ax = plots.roofline({"fp32": 1000.0, "bf16": 4000.0}, 100.0,
                        {"matmul": (50.0, 800.0), "add": (0.08, 7.0)}, ax=axes[1],
                        hardware="test cpu")
    assert ax.get_xscale() == "log" and "test cpu" in ax.get_title()
    with pytest.raises(UsageError, match="bandwidth"):
        plots.roofline(1.0, 0.0)
    plots.bars({"a": 1.0, "b": 2.5}, ax=axes[2], reference=1.0)
    plots.scaling([1, 2, 4], [10.0, 19.0, 30.0], ax=axes[3])
    assert any("75%" in t.get_text() for t in axes[3].texts)
    plt.close(fig)
