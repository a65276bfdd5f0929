"""Lab 1's claims that its master holds (docs/claims/lab1_backprop.yml).

The master's layers are taken from its cells and run here: their matrix products are
counted to hold the prose's "backward costs about twice a forward pass", and the master's
``train_spirals`` is trained with the quick profile's sizes to hold "a correct
implementation gets close to 100 %".
"""

import nbformat
import numpy as np
import pytest

from course_utils import profiles
from course_utils.checks import backprop
from course_utils.data import minibatches
from tests.conftest import REPO

MASTER = REPO / "labs" / "solutions" / "lab1_backprop.ipynb"


@pytest.fixture(scope="module")
def master():
    """The master's classes and train_spirals, defined by running their cells."""
    namespace = {"np": np, "minibatches": minibatches}
    for cell in nbformat.read(MASTER, as_version=4).cells:
        if cell.cell_type == "code" and cell.source.startswith(("class ", "def train_")):
            exec(compile(cell.source, str(MASTER), "exec"), namespace)
    assert {"Linear", "GELU", "SoftmaxCrossEntropy", "train_spirals"} <= set(namespace)
    return namespace


class Counted(np.ndarray):
    """An array whose matrix products add their multiply-adds to ``Counted.macs``."""

    macs = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(x) if isinstance(x, Counted) else x for x in inputs]
        if ufunc is np.matmul and method == "__call__":
            a, b = plain
            Counted.macs += a.shape[0] * a.shape[1] * b.shape[1]
        out = getattr(ufunc, method)(*plain, **kwargs)
        return out.view(Counted) if isinstance(out, np.ndarray) else out


def macs(run):
    Counted.macs = 0
    run()
    return Counted.macs


def test_backward_costs_about_twice_a_forward_pass(master):
    """Part 0 and Try it 5: a linear layer's backward is two matrix products of its
    forward's size, so the backward sweep of the lab's network costs twice its forward
    sweep in multiply-adds, whatever the number of parameters."""
    rng = np.random.default_rng(0)
    layer = master["Linear"](1024, 1024, rng)
    x = rng.standard_normal((1024, 1024)).view(Counted)
    forward = macs(lambda: layer.forward(x))
    backward = macs(lambda: layer.backward(np.ones((1024, 1024)).view(Counted)))
    assert forward == 1024**3 and backward == 2 * forward

    hidden, batch = 32, 64
    Linear, GELU = master["Linear"], master["GELU"]
    net = [Linear(2, hidden, rng), GELU(), Linear(hidden, hidden, rng), GELU(),
           Linear(hidden, 2, rng)]
    loss = master["SoftmaxCrossEntropy"](0.05)
    y = rng.integers(0, 2, batch)

    def forward_sweep():
        h = rng.standard_normal((batch, 2)).view(Counted)
        for layer in net:
            h = layer.forward(h)
        loss.forward(np.asarray(h), y)

    def backward_sweep():
        grad = loss.backward().view(Counted)
        for layer in reversed(net):
            grad = layer.backward(grad)

    forward = macs(forward_sweep)
    backward = macs(backward_sweep)
    n_weights = 2 * hidden + hidden * hidden + hidden * 2
    assert forward == batch * n_weights  # one multiply-add per weight and example
    assert backward == 2 * forward  # not one forward pass per parameter


def test_a_correct_implementation_gets_close_to_100_percent(master):
    """Part 4: the check asks for 95 %; the master, trained with the quick profile's sizes
    and the notebook's default SEED, reaches at least 99 % of the test points."""
    sizes = profiles.sizes("quick", "lab1_backprop")
    accuracy = backprop.check_train_spirals(master["train_spirals"], sizes, seed=0)
    assert backprop.MIN_ACCURACY == 0.95
    assert accuracy >= 0.99
