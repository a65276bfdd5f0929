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
