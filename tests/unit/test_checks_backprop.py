"""course_utils.checks.backprop: right answers pass, the usual wrong ones fail clearly."""

import numpy as np
import pytest

from course_utils import profiles
from course_utils.checks import backprop, numerical_gradient, scoring


# --------------------------------------------------------------------------- references
def _targets(y, classes, smoothing):
    """The smoothed targets, written here (the checks refuse course code in answers)."""
    q = np.full((len(y), classes), smoothing / classes)
    q[np.arange(len(y)), y] += 1.0 - smoothing
    return q


class Linear:
    def __init__(self, n_in, n_out, rng):
        self.W = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in))
        self.b = np.zeros(n_out)
        self.x = self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, grad_out):
        self.dW = grad_out.T @ self.x
        self.db = grad_out.sum(axis=0)
        return grad_out @ self.W


class GELU:
    C = np.sqrt(2.0 / np.pi)

    def __init__(self):
        self.x = None

    def forward(self, x):
        self.x = x
        self.t = np.tanh(self.C * (x + 0.044715 * x**3))
        return 0.5 * x * (1.0 + self.t)

    def backward(self, grad_out):
        x, t = self.x, self.t
        local = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * self.C * (1.0 + 3 * 0.044715 * x**2)
        return grad_out * local


class SoftmaxCrossEntropy:
    def __init__(self, smoothing=0.0):
        self.smoothing = smoothing
        self.probs = self.y = None

    def forward(self, logits, y):
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs, self.y = np.exp(logp), y
        self.q = _targets(y, logits.shape[1], self.smoothing)
        return float(-(self.q * logp).sum(axis=1).mean())

    def backward(self):
        return (self.probs - self.q) / len(self.y)


def test_reference_implementations_pass_every_check():
    backprop.check_linear_forward(Linear)
    backprop.check_linear_backward(Linear)
    backprop.check_gelu(GELU)
    backprop.check_softmax_ce_forward(SoftmaxCrossEntropy)
    backprop.check_softmax_ce_backward(SoftmaxCrossEntropy)


@pytest.mark.parametrize("smoothing", backprop.SMOOTHINGS)
def test_closed_form_loss_gradient_matches_the_numerical_one(smoothing):
    rng = np.random.default_rng(0)
    logits, y = rng.standard_normal((5, 4)), rng.integers(0, 4, size=5)
    z = logits.copy()
    numeric = numerical_gradient(
        lambda: backprop.cross_entropy_reference(z, y, smoothing), z)
    np.testing.assert_allclose(backprop.cross_entropy_grad_reference(logits, y, smoothing),
                               numeric, rtol=1e-6, atol=1e-9)


def test_the_references_are_pytorchs_functions():
    """linear, GELU (tanh) and label-smoothed cross-entropy: the lab's formulas are
    PyTorch's, in float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    t = torch.from_numpy
    np.testing.assert_allclose(backprop.linear_reference(x, W, b),
                               F.linear(t(x), t(W), t(b)).numpy(), rtol=1e-12)
    z = rng.standard_normal((6, 9)) * 3
    np.testing.assert_allclose(backprop.gelu_reference(z),
                               F.gelu(t(z), approximate="tanh").numpy(), rtol=1e-12,
                               atol=1e-15)
    logits, y = rng.standard_normal((6, 4)) * 2, rng.integers(0, 4, size=6)
    for smoothing in backprop.SMOOTHINGS:
        expected = F.cross_entropy(t(logits), t(y), label_smoothing=smoothing).item()
        assert np.isclose(backprop.cross_entropy_reference(logits, y, smoothing), expected,
                          rtol=1e-12)


# --------------------------------------------------------------------------- Linear
class LinearForwardNoBias(Linear):
    def forward(self, x):
        self.x = x
        return x @ self.W.T


class LinearForwardReturnsNone(Linear):
    def forward(self, x):
        self.x = x


class LinearForwardInPlace(Linear):
    def forward(self, x):
        out = super().forward(x.copy())
        x += 1.0
        return out


class LinearWrongDW(Linear):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.dW = self.dW + 0.5
        return dx


class LinearMeanDW(Linear):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.dW = self.dW / len(grad_out)
        return dx


class LinearTransposedDW(Linear):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.dW = self.x.T @ grad_out
        return dx


class LinearNoDB(Linear):
    def backward(self, grad_out):
        self.dW = grad_out.T @ self.x
        return grad_out @ self.W


class LinearDBKeepdims(Linear):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.db = grad_out.sum(axis=0, keepdims=True)
        return dx


class LinearWrongDX(Linear):
    def backward(self, grad_out):
        super().backward(grad_out)
        return grad_out @ self.W * 2


class LinearBackwardReturnsNone(Linear):
    def backward(self, grad_out):
        super().backward(grad_out)


class LinearBackwardUpdates(Linear):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.W = self.W - 0.1 * self.dW
        return dx


class LinearWrongInit(Linear):
    def __init__(self, n_in, n_out, rng):
        super().__init__(n_in, n_out, rng)
        self.W = self.W.T  # lesson 01's layout, (n_in, n_out)


class LinearLesson01Layout(Linear):
    def forward(self, x):
        self.x = x
        return x @ self.W + self.b


@pytest.mark.parametrize("cls, pattern", [
    (LinearForwardNoBias, r"Linear\(5, 3\)\.forward.*values differ.*b added to every row"),
    (LinearForwardReturnsNone, r"Linear\(5, 3\)\.forward.*returned None"),
    (LinearForwardInPlace, r"changed its input array in place"),
    (LinearWrongInit, r"\.W has shape \(5, 3\), expected \(3, 5\)"),
])
def test_linear_forward_failures_name_what_differs(cls, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_linear_forward(cls)


@pytest.mark.parametrize("cls, pattern", [
    (LinearWrongDW, r"self\.dW: 15 of 15 values differ; first at index \(0, 0\)"),
    (LinearMeanDW, r"self\.dW: .*7 times too small"),
    (LinearTransposedDW, r"self\.dW: shape \(5, 3\), expected \(3, 5\).*transposed"),
    (LinearNoDB, r"did not set self\.db"),
    (LinearDBKeepdims, r"self\.db: shape \(1, 3\), expected \(3,\).*sum over the batch"),
    (LinearWrongDX, r"returned dL/dx: .*values differ"),
    (LinearBackwardReturnsNone, r"backward \(batch 7\) returned None"),
    (LinearBackwardUpdates, r"changed self\.W or self\.b"),
])
def test_linear_backward_failures_name_what_differs(cls, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_linear_backward(cls)


def test_lesson_01s_layout_does_not_fit_pytorchs():
    """x @ W with W stored (n_out, n_in): the student's own error, shown as it is."""
    with pytest.raises(ValueError, match="matmul"):
        backprop.check_linear_forward(LinearLesson01Layout)


def test_a_layer_right_on_one_shape_only_fails_on_the_other():
    class FirstShapeOnly(Linear):
        def forward(self, x):
            out = super().forward(x)
            return out if x.shape == (7, 5) else out + 1.0

    with pytest.raises(AssertionError, match=r"Linear\(11, 6\)\.forward\(x of shape \(4, 11\)"):
        backprop.check_linear_forward(FirstShapeOnly)


# --------------------------------------------------------------------------- GELU
class GELUIsReLU(GELU):
    def forward(self, x):
        self.x = x
        self.t = np.tanh(self.C * (x + 0.044715 * x**3))
        return np.maximum(x, 0.0)


class GELUErfForward(GELU):
    """The exact (erf) GELU: close to the tanh form but not it (up to ~5e-4 apart)."""

    def forward(self, x):
        from math import erf
        self.x = x
        self.t = np.tanh(self.C * (x + 0.044715 * x**3))
        return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


class GELUBackwardNoChain(GELU):
    def backward(self, grad_out):
        return grad_out * 0.5 * (1.0 + self.t)  # the product rule's second term forgotten


class GELUInPlace(GELU):
    def forward(self, x):
        out = super().forward(x.copy())
        x *= 0.5
        return out


class GELUBackwardReturnsNone(GELU):
    def backward(self, grad_out):
        self.seen = grad_out


@pytest.mark.parametrize("cls, pattern", [
    (GELUIsReLU, r"GELU\(\)\.forward.*values differ.*That is ReLU"),
    (GELUErfForward, r"GELU\(\)\.forward.*values differ.*tanh"),
    (GELUBackwardNoChain, r"GELU\(\)\.backward.*dL/dx: \d+ of 35 values differ.*product and chain"),
    (GELUInPlace, r"changed its input array in place"),
    (GELUBackwardReturnsNone, r"GELU\(\)\.backward.*returned None"),
])
def test_gelu_failures_name_what_differs(cls, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_gelu(cls)


# --------------------------------------------------------------------------- loss
class SoftmaxNoMax(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        e = np.exp(logits)
        self.probs, self.y = e / e.sum(axis=1, keepdims=True), y
        self.q = _targets(y, logits.shape[1], self.smoothing)
        return float(-(self.q * np.log(self.probs)).sum(axis=1).mean())


class SoftmaxIgnoresSmoothing(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        smoothing, self.smoothing = self.smoothing, 0.0
        try:
            return super().forward(logits, y)
        finally:
            self.smoothing = smoothing


class SoftmaxNoSmoothingArgument:
    """Lesson 01's loss as a class: no smoothing argument."""

    def __init__(self):
        self.inner = SoftmaxCrossEntropy()

    def forward(self, logits, y):
        return self.inner.forward(logits, y)

    def backward(self):
        return self.inner.backward()


class SoftmaxSum(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        return super().forward(logits, y) * len(y)


class SoftmaxPerExample(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        super().forward(logits, y)
        return -np.log(self.probs[np.arange(len(y)), y])  # per example, no mean


class SoftmaxForwardNone(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        super().forward(logits, y)


class SoftmaxShiftsInPlace(SoftmaxCrossEntropy):
    def forward(self, logits, y):
        logits -= logits.max(axis=1, keepdims=True)
        return super().forward(logits, y)


class SoftmaxBackwardNoMean(SoftmaxCrossEntropy):
    def backward(self):
        return super().backward() * len(self.y)


class SoftmaxBackwardNoOnehot(SoftmaxCrossEntropy):
    def backward(self):
        return self.probs / len(self.y)


class SoftmaxBackwardOnehotOnly(SoftmaxCrossEntropy):
    def backward(self):
        grad = self.probs.copy()
        grad[np.arange(len(self.y)), self.y] -= 1.0
        return grad / len(self.y)


class SoftmaxBackwardWrongShape(SoftmaxCrossEntropy):
    def backward(self):
        return super().backward().T


@pytest.mark.parametrize("cls, pattern", [
    (SoftmaxNoMax, r"logits around \+1000: got (nan|inf).*subtract each row's maximum"),
    (SoftmaxSum, r"forward\(logits of shape \(7, 3\), y\): got .*7 times too large.*MEAN"),
    (SoftmaxIgnoresSmoothing, r"smoothing=0\.1\).*WITHOUT label smoothing"),
    (SoftmaxNoSmoothingArgument, r"SoftmaxCrossEntropy\(smoothing=0\.0\) failed.*keep the given"),
    (SoftmaxPerExample, r"returned 7 values \(shape \(7,\)\); return ONE number"),
    (SoftmaxForwardNone, r"forward.*returned None"),
    (SoftmaxShiftsInPlace, r"forward.*changed its input array in place"),
])
def test_loss_forward_failures_name_what_differs(cls, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_softmax_ce_forward(cls)


def test_unstable_softmax_is_graded_by_forward_only():
    backprop.check_softmax_ce_backward(SoftmaxNoMax)


@pytest.mark.parametrize("cls, pattern", [
    (SoftmaxBackwardNoMean, r"backward\(\).*7 times too large"),
    (SoftmaxBackwardNoOnehot, r"backward\(\).*values differ.*smoothed target"),
    (SoftmaxBackwardOnehotOnly, r"smoothing=0\.1\)\.backward\(\).*values differ.*smoothed target"),
    (SoftmaxBackwardWrongShape, r"backward\(\).*shape \(3, 7\), expected \(7, 3\)"),
])
def test_loss_backward_failures_name_what_differs(cls, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_softmax_ce_backward(cls)


# --------------------------------------------------------------------------- unfinished
class Unfinished:
    """A student's class before any answer: the given __init__, unfinished methods."""

    def __init__(self, n_in=1, n_out=1, rng=None, smoothing=0.0):
        self.W, self.b = np.zeros((n_out, n_in)), np.zeros(n_out)

    def forward(self, *args):
        raise NotImplementedError("Lab answer: write your code here")

    def backward(self, *args):
        raise NotImplementedError("Lab answer: write your code here")


@pytest.mark.parametrize("run", [
    backprop.check_linear_forward, backprop.check_linear_backward, backprop.check_gelu,
    backprop.check_softmax_ce_forward, backprop.check_softmax_ce_backward,
])
def test_unfinished_answers_read_as_not_implemented(run, monkeypatch):
    monkeypatch.setattr(scoring, "RESULTS", {})
    with scoring.check("unfinished", points=2):
        run(Unfinished)
    (result,) = scoring.RESULTS.values()
    assert result.points == 0 and not result.passed
    assert "not implemented" in result.message


def test_a_crash_in_student_code_is_reported_as_such(monkeypatch):
    class Crashes(Linear):
        def forward(self, x):
            return x @ self.W  # shapes do not match

    monkeypatch.setattr(scoring, "RESULTS", {})
    with scoring.check("crash", points=1):
        backprop.check_linear_forward(Crashes)
    assert "ValueError" in scoring.RESULTS["crash"].message


# --------------------------------------------------------------------------- training
def reference_train(X_train, y_train, *, hidden, lr, num_epochs, batch_size, seed=0):
    from course_utils.data import minibatches

    rng = np.random.default_rng(seed)
    layers = [Linear(2, hidden, rng), GELU(), Linear(hidden, hidden, rng), GELU(),
              Linear(hidden, 2, rng)]
    loss_fn = SoftmaxCrossEntropy(smoothing=0.05)

    def run(x):
        for layer in layers:
            x = layer.forward(x)
        return x

    history = {"train loss": []}
    for _ in range(num_epochs):
        losses = []
        for xb, yb in minibatches(X_train, y_train, batch_size, rng):
            losses.append(loss_fn.forward(run(xb), yb))
            grad = loss_fn.backward()
            for layer in reversed(layers):
                grad = layer.backward(grad)
            for layer in layers[::2]:
                layer.W -= lr * layer.dW
                layer.b -= lr * layer.db
        history["train loss"].append(float(np.mean(losses)))
    return (lambda X: run(np.asarray(X, np.float64)).argmax(axis=1)), history


@pytest.mark.parametrize("profile", ["quick"])
def test_reference_training_reaches_the_bar_with_the_profile_sizes(profile):
    result = {}
    sizes = profiles.sizes(profile, "lab1_backprop")
    accuracy = backprop.check_train_spirals(reference_train, sizes, seed=0, result=result)
    assert accuracy >= backprop.MIN_ACCURACY
    assert result["accuracy"] == accuracy and callable(result["predict"])
    assert len(result["history"]["train loss"]) == sizes["num_epochs"]


SMALL = {"n_per_class": 60, "hidden": 8, "lr": 0.1, "num_epochs": 3, "batch_size": 16}


def test_a_model_below_the_bar_fails_and_is_still_returned():
    def constant(X_train, y_train, **_):
        return (lambda X: np.zeros(len(X), dtype=np.int64)), {"train loss": [0.7, 0.7]}

    result = {}
    with pytest.raises(AssertionError, match=r"test accuracy \d+\.\d% is below 95%.*"
                                             r"final train loss 0\.7.*hardly went down"):
        backprop.check_train_spirals(constant, SMALL, result=result)
    assert 0.3 < result["accuracy"] < 0.7


def test_a_diverged_training_says_so():
    def diverged(X_train, y_train, **_):
        return (lambda X: np.zeros(len(X), dtype=np.int64)), {"train loss": [0.7, np.nan]}

    with pytest.raises(AssertionError, match="inf/nan: is the learning rate too large"):
        backprop.check_train_spirals(diverged, SMALL)


@pytest.mark.parametrize("returned, pattern", [
    (None, r"returned NoneType; expected \(predict, history\)"),
    ((1, 2, 3), r"returned a tuple of 3; expected \(predict, history\)"),
    ((lambda X: np.zeros((len(X), 2)), {}), r"predict\(X_test\) has shape \(30, 2\)"),
])
def test_train_spirals_with_the_wrong_return_value(returned, pattern):
    with pytest.raises(AssertionError, match=pattern):
        backprop.check_train_spirals(lambda *a, **k: returned, SMALL)


def test_train_spirals_gets_the_sizes_and_seed():
    seen = {}

    def spy(X_train, y_train, **kwargs):
        seen.update(kwargs, n=len(y_train))
        return (lambda X: np.zeros(len(X), dtype=np.int64)), {}

    with pytest.raises(AssertionError):
        backprop.check_train_spirals(spy, SMALL, seed=3)
    assert seen == {"hidden": 8, "lr": 0.1, "num_epochs": 3, "batch_size": 16, "seed": 3,
                    "n": 90}
