"""course_utils.foundations.frameworks: parameter/gradient transfer, autograd graph text, compiler
status, first-call timing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import models
from course_utils.errors import UsageError
from course_utils.foundations import frameworks, numpy_mlp


def test_copied_params_give_the_numpy_forward_and_gradients():
    rng = np.random.default_rng(0)
    params = numpy_mlp.init_params([3, 5, 4, 2], rng, "tanh", dtype=np.float64)
    params["b2"] = rng.normal(size=4)
    net = models.mlp(3, (5, 4), 2, "tanh").double()
    frameworks.copy_numpy_params(net, params)
    X, y = rng.normal(size=(7, 3)), rng.integers(0, 2, size=7)
    logits = net(torch.as_tensor(X))
    np.testing.assert_allclose(logits.detach().numpy(),
                               numpy_mlp.forward(params, X, "tanh")[0], rtol=1e-12)
    F.cross_entropy(logits, torch.as_tensor(y)).backward()
    _, expected = numpy_mlp.loss_and_grads(params, X, y, "tanh")
    got = frameworks.numpy_grads(net)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12)


def test_a_wrong_gradient_would_be_noticed():
    """numpy_grads really transposes: without .T the shapes would not even match."""
    net = models.mlp(3, (5,), 2).double()
    F.cross_entropy(net(torch.zeros(2, 3, dtype=torch.float64)), torch.tensor([0, 1])).backward()
    grads = frameworks.numpy_grads(net)
    assert grads["W1"].shape == (3, 5) and grads["W2"].shape == (5, 2)
    np.testing.assert_array_equal(grads["W1"], net[0].weight.grad.numpy().T)


def test_copy_rejects_mismatched_params_and_missing_grads():
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match="linear layers"):
        frameworks.copy_numpy_params(models.mlp(2, (4,), 2),
                                     numpy_mlp.init_params([2, 4, 4, 2], rng))
    with pytest.raises(UsageError, match="layer 1"):
        frameworks.copy_numpy_params(models.mlp(2, (3,), 2),
                                     numpy_mlp.init_params([2, 4, 2], rng))
    with pytest.raises(UsageError, match="backward"):
        frameworks.numpy_grads(models.mlp(2, (3,), 2))


def test_autograd_graph_names_leaves_and_marks_shared_nodes():
    w = torch.ones(3, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    z = (w * 2 + b).sum()
    h = z * z  # the same MulBackward input twice: the DAG reaches z's node twice
    text = frameworks.autograd_graph(h, names={"w": w, "b": b})
    lines = text.splitlines()
    assert lines[0] == "MulBackward0"
    assert "AccumulateGrad -> w.grad (3,)" in text and "AccumulateGrad -> b.grad (1,)" in text
    assert "(shared: see above)" in text
    assert "no graph" in frameworks.autograd_graph(torch.ones(2))
    assert "stopped after 2 nodes" in frameworks.autograd_graph(h, max_nodes=2)


def test_compiler_status(monkeypatch):
    # Inductor reads $CXX once, when its config is first imported: import it before the
    # fake compiler is set, or every later torch.compile in this process would use it.
    import torch._inductor.config  # noqa: F401

    monkeypatch.setenv("CXX", "surely-not-a-compiler-xyz")
    ok, why = frameworks.compiler_status("cpu")
    assert not ok and "surely-not-a-compiler-xyz" in why and "CXX" in why
    monkeypatch.delenv("CXX")
    monkeypatch.setattr(frameworks.shutil, "which",
                        lambda name: "/usr/bin/g++" if name == "g++" else None)
    ok, why = frameworks.compiler_status("cpu")
    assert ok and "/usr/bin/g++" in why
    monkeypatch.setattr(frameworks.importlib.util, "find_spec", lambda name: None)
    ok, why = frameworks.compiler_status("cuda")
    assert not ok and "Triton" in why


def test_first_call_returns_result_and_one_timing():
    calls = []
    result, timing = frameworks.first_call(lambda: calls.append(1) or 42, sync="none")
    assert result == 42 and calls == [1]
    assert timing.repeats == 1 and timing.warmup == 0 and timing.median >= 0
