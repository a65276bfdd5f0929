"""Reference checks for lab 1 (backpropagation by hand in NumPy).

The graded cells of ``labs/lab1_backprop.ipynb`` call these functions with the student's
classes. Each check runs the student's layer on random, odd-sized float64 inputs with
fixed seeds and compares it with a NumPy reference:

* forward passes with the formula written out in NumPy (each cross-checked against
  PyTorch's own function in tests/unit/test_checks_backprop.py: ``F.linear``,
  ``F.gelu(approximate="tanh")``, ``F.cross_entropy(label_smoothing=...)``);
* backward passes with the *numerical* gradient (central differences) of
  ``sum(out * G)`` for a random ``G``: the gradient of that scalar with respect to ``out``
  is ``G``, so ``backward(G)`` must equal it, whatever the layer;
* the loss's backward with the numerical gradient of the mean cross-entropy (its
  stability for logits around +-1000 is graded once, in the forward check).

A mismatch raises ``AssertionError`` with a message that names the quantity, the shapes
and the first wrong entry (and a hint for the usual mistakes); the lab's ``check`` turns
that into 0 points and one readable line. ``NotImplementedError`` and the student's own
exceptions pass through unchanged, so ``check`` can say "not implemented" or show them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import train_test_split, two_spirals
from . import assert_close, check_seed, numerical_gradient
from .own_work import answers_own

# (batch, n_in, n_out): odd, unequal sizes, so a transposed or mis-summed array cannot
# have the right shape by accident.
LINEAR_SHAPES = ((7, 5, 3), (4, 11, 6))
# (batch, features) for GELU; (batch, classes) for the loss.
GELU_SHAPES = ((7, 5), (3, 13))
LOSS_SHAPES = ((7, 3), (6, 5))
SMOOTHINGS = (0.0, 0.1, 0.25)  # label smoothing: none (plain cross-entropy), usual, large
GELU_C = float(np.sqrt(2.0 / np.pi))  # GELU's tanh approximation: c * (x + 0.044715 x^3)
MIN_ACCURACY = 0.95


# --------------------------------------------------------------------------- references
def linear_reference(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ W.T + b`` with ``W`` of shape (n_out, n_in), as ``torch.nn.Linear`` stores it
    (``torch.nn.functional.linear(x, W, b)``)."""
    return x @ W.T + b


def relu_reference(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` element-wise (lesson 01's activation; lab 1 asks for GELU)."""
    return np.maximum(x, 0.0)


def gelu_reference(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh approximation, ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))`` with
    ``c = sqrt(2 / pi)``: ``torch.nn.functional.gelu(x, approximate="tanh")``, the form
    GPT-2 and BERT were trained with."""
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x**3)))


def log_softmax_reference(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, computed stably (log-sum-exp with the row maximum)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def smoothed_targets(y: np.ndarray, classes: int, smoothing: float = 0.0) -> np.ndarray:
    """Label smoothing's target distribution, row by row: ``1 - smoothing`` on the label
    plus ``smoothing / classes`` on every class (the label included), as in PyTorch."""
    q = np.full((len(y), classes), smoothing / classes)
    q[np.arange(len(y)), y] += 1.0 - smoothing
    return q


def cross_entropy_reference(logits: np.ndarray, y: np.ndarray,
                            smoothing: float = 0.0) -> float:
    """Mean over the batch of ``-sum_k q[n, k] log softmax(logits)[n, k]`` with the
    smoothed targets q: ``F.cross_entropy(logits, y, label_smoothing=smoothing)``; with
    ``smoothing=0`` the plain ``-log softmax(logits)[n, y[n]]``."""
    logp = log_softmax_reference(logits)
    q = smoothed_targets(y, logits.shape[1], smoothing)
    return float(-(q * logp).sum(axis=1).mean())


def cross_entropy_grad_reference(logits: np.ndarray, y: np.ndarray,
                                 smoothing: float = 0.0) -> np.ndarray:
    """``(softmax(logits) - q) / batch``: d(mean loss)/d(logits)."""
    probs = np.exp(log_softmax_reference(logits))
    return (probs - smoothed_targets(y, logits.shape[1], smoothing)) / len(y)


# --------------------------------------------------------------------------- helpers
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(check_seed(seed))


def _away_from_zero(x: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Move entries within ``margin`` of 0 away from it (ReLU's kink breaks finite differences)."""
    x = x.copy()
    small = np.abs(x) < margin
    x[small] = np.where(x[small] < 0, -margin, margin) * 2
    return x


def _shape_hint(got: np.ndarray, expected: np.ndarray, what: str) -> str:
    """Why ``got`` has the wrong shape, for the usual mistakes ('' if no idea)."""
    if got.ndim == expected.ndim == 2 and got.shape == expected.shape[::-1]:
        return f"Looks transposed: {what} must have shape {expected.shape}."
    if expected.ndim == 1 and got.ndim == 2 and expected.shape[0] in got.shape:
        return (f"{what} must have shape {expected.shape}: sum over the batch axis "
                "(without keepdims).")
    if got.size == expected.size:
        return (f"Right number of values but shape {got.shape}: {what} must have "
                f"shape {expected.shape}.")
    return ""


def _value_hint(got: np.ndarray, expected: np.ndarray, batch: int | None) -> str:
    """A pattern in wrong values: off by the batch size, or the sign ('' if none)."""
    if not np.all(np.isfinite(got)) or not np.any(expected):
        return ""
    if batch and batch > 1 and np.allclose(got, expected * batch, rtol=1e-4, atol=1e-9):
        return f"Every value is {batch} times too large ({batch} is the batch size)."
    if batch and batch > 1 and np.allclose(got * batch, expected, rtol=1e-4, atol=1e-9):
        return f"Every value is {batch} times too small ({batch} is the batch size)."
    if np.allclose(got, -expected, rtol=1e-4, atol=1e-9):
        return "The sign is flipped."
    return ""


def _compare(name: str, got: Any, expected: np.ndarray, *, batch: int | None = None,
             what: str = "", hint: str = "", rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """``assert_close``, with hints for the usual mistakes appended to its message.

    A wrong shape gets a shape hint only; wrong values get the pattern found in them
    (off by the batch size, flipped sign) followed by ``hint``.
    """
    try:
        assert_close(name, got, expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        if got is None:
            raise
        got = np.asarray(got)
        if got.shape != expected.shape:
            extra = [_shape_hint(got, expected, what or name)]
        else:
            extra = [_value_hint(got, expected, batch), hint]
        extra = " ".join(e for e in extra if e)
        raise AssertionError(f"{exc}. {extra}" if extra else str(exc)) from None


def _array_result(name: str, value: Any) -> Any:
    """``value`` unchanged, but a clear message if it is not array-like at all."""
    if value is None:
        raise AssertionError(f"{name} returned None (did you forget `return`?)")
    if isinstance(value, tuple):
        raise AssertionError(f"{name} returned a tuple of {len(value)} items; "
                             "return one NumPy array")
    return value


def _attribute(obj: Any, attr: str, cls: str) -> Any:
    value = getattr(obj, attr, None)
    if value is None:
        raise AssertionError(f"{cls}.backward did not set self.{attr} "
                             f"(it is {'missing' if not hasattr(obj, attr) else 'None'})")
    return value


def _unchanged(name: str, arg: np.ndarray, before: np.ndarray) -> None:
    if not np.array_equal(arg, before):
        raise AssertionError(f"{name} changed its input array in place; "
                             "compute a new array instead (the caller may still need it)")


# --------------------------------------------------------------------------- Linear
def _linear_layer(Linear: type, n_in: int, n_out: int, rng: np.random.Generator):
    """The student's layer with random float64 ``W`` and a non-zero ``b``."""
    layer = Linear(n_in, n_out, np.random.default_rng(0))
    for attr, shape in (("W", (n_out, n_in)), ("b", (n_out,))):
        value = getattr(layer, attr, None)
        if value is None:
            raise AssertionError(f"Linear({n_in}, {n_out}, rng) has no self.{attr}: "
                                 "keep the given __init__")
        if np.shape(value) != shape:
            raise AssertionError(f"Linear({n_in}, {n_out}, rng).{attr} has shape "
                                 f"{np.shape(value)}, expected {shape}: keep the given __init__")
    layer.W = rng.standard_normal((n_out, n_in))
    layer.b = rng.standard_normal(n_out)
    return layer


@answers_own("Linear")
def check_linear_forward(Linear: type, *, seed: int = 101) -> None:
    """``Linear.forward`` equals ``x @ W.T + b`` (W: (n_out, n_in)) on two odd shapes."""
    rng = _rng(seed)
    for batch, n_in, n_out in LINEAR_SHAPES:
        layer = _linear_layer(Linear, n_in, n_out, rng)
        x = rng.standard_normal((batch, n_in))
        before = x.copy()
        where = f"Linear({n_in}, {n_out}).forward(x of shape {x.shape})"
        out = _array_result(where, layer.forward(x))
        _unchanged(where, x, before)
        _compare(where, out, linear_reference(x, layer.W, layer.b), what="the output",
                 hint="Expected x @ W.T + b, with b added to every row: W has shape "
                 "(n_out, n_in), as torch.nn.Linear stores its weight.")


@answers_own("Linear")
def check_linear_backward(Linear: type, *, seed: int = 102) -> None:
    """``Linear.backward`` returns dL/dx and sets ``dW``, ``db`` (numerical gradients)."""
    rng = _rng(seed)
    for batch, n_in, n_out in LINEAR_SHAPES:
        layer = _linear_layer(Linear, n_in, n_out, rng)
        x = rng.standard_normal((batch, n_in))
        G = rng.standard_normal((batch, n_out))
        W, b = layer.W.copy(), layer.b.copy()
        xs, Ws, bs = x.copy(), W.copy(), b.copy()

        def objective(xs=xs, Ws=Ws, bs=bs, G=G):
            return float(np.sum(linear_reference(xs, Ws, bs) * G))

        expected_dx = numerical_gradient(objective, xs)
        expected_dW = numerical_gradient(objective, Ws)
        expected_db = numerical_gradient(objective, bs)

        where = f"Linear({n_in}, {n_out}).backward (batch {batch})"
        layer.forward(x.copy())
        dx = _array_result(where, layer.backward(G.copy()))
        _compare(f"{where}: returned dL/dx", dx, expected_dx, what="dL/dx",
                 hint="dL/dx has x's shape (batch, n_in): combine grad_out with W.")
        _compare(f"{where}: self.dW", _attribute(layer, "dW", "Linear"), expected_dW,
                 what="dW", batch=batch, hint="dW has W's shape (n_out, n_in): combine "
                 "grad_out with the saved x, summing over the batch.")
        _compare(f"{where}: self.db", _attribute(layer, "db", "Linear"), expected_db,
                 what="db", batch=batch, hint="db has b's shape (n_out,): b is added to every row.")
        if not (np.array_equal(layer.W, W) and np.array_equal(layer.b, b)):
            raise AssertionError(f"{where} changed self.W or self.b: backward only computes "
                                 "gradients; the training loop updates the parameters")


# --------------------------------------------------------------------------- GELU
@answers_own("GELU")
def check_gelu(GELU: type, *, seed: int = 103) -> None:
    """``GELU.forward`` equals the tanh approximation; ``backward`` is its derivative times
    the incoming gradient (compared with the numerical gradient)."""
    rng = _rng(seed)
    for batch, n in GELU_SHAPES:
        x = rng.standard_normal((batch, n)) * 2.0
        G = rng.standard_normal((batch, n))
        layer = GELU()
        before = x.copy()
        where = f"GELU().forward(x of shape {x.shape})"
        out = _array_result(where, layer.forward(x))
        _unchanged(where, x, before)
        hint = "Expected 0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3))), c = sqrt(2 / pi)."
        if np.allclose(np.asarray(out, dtype=float), relu_reference(x)):
            hint = "That is ReLU (lesson 01's activation); this layer is GELU. " + hint
        _compare(where, out, gelu_reference(x), what="the output", hint=hint)

        xs = x.copy()
        expected_dx = numerical_gradient(lambda xs=xs, G=G: float(np.sum(gelu_reference(xs) * G)),
                                         xs)
        where = f"GELU().backward (input shape {x.shape})"
        dx = _array_result(where, layer.backward(G.copy()))
        _compare(f"{where}: returned dL/dx", dx, expected_dx, what="dL/dx",
                 hint="dL/dx = grad_out * GELU'(x) at the forward INPUT x: differentiate "
                 "0.5 x (1 + tanh u) with u = c (x + 0.044715 x^3), product and chain rule "
                 "(tanh' = 1 - tanh^2).")


# --------------------------------------------------------------------------- loss
def _loss_value(where: str, value: Any) -> float:
    if value is None:
        raise AssertionError(f"{where} returned None (did you forget `return`?)")
    size = np.size(value)
    if size != 1:
        raise AssertionError(f"{where} returned {size} values (shape {np.shape(value)}); "
                             "return ONE number, the mean loss over the batch")
    return float(np.asarray(value).reshape(()))


def _loss_cases(rng: np.random.Generator):
    """(label, logits, y, smoothing): ordinary logits with every smoothing of SMOOTHINGS,
    then logits near +1000 and near -1000 (with the usual smoothing)."""
    for smoothing in SMOOTHINGS:
        for batch, classes in LOSS_SHAPES:
            y = rng.integers(0, classes, size=batch)
            yield "", rng.standard_normal((batch, classes)) * 2.0, y, smoothing
    batch, classes = LOSS_SHAPES[0]
    y = rng.integers(0, classes, size=batch)
    for sign, name in ((1, "+1000"), (-1, "-1000")):
        logits = sign * 1000.0 + rng.standard_normal((batch, classes)) * 3
        yield f" with logits around {name}", logits, y, SMOOTHINGS[1]


def _loss_layer(SoftmaxCrossEntropy: type, smoothing: float) -> Any:
    try:
        return SoftmaxCrossEntropy(smoothing=smoothing)
    except TypeError as exc:
        raise AssertionError(f"SoftmaxCrossEntropy(smoothing={smoothing}) failed ({exc}): "
                             "keep the given __init__(self, smoothing=0.0)") from None


_STABILITY = ("np.exp overflows for logits near 1000 (and 0/0 appears near -1000): "
              "subtract each row's maximum before np.exp; softmax does not change.")


@answers_own("SoftmaxCrossEntropy")
def check_softmax_ce_forward(SoftmaxCrossEntropy: type, *, seed: int = 104) -> None:
    """The mean label-smoothed cross-entropy of softmax(logits), for several smoothings,
    also for logits around +-1000."""
    rng = _rng(seed)
    for label, logits, y, smoothing in _loss_cases(rng):
        where = (f"SoftmaxCrossEntropy(smoothing={smoothing}).forward(logits of shape "
                 f"{logits.shape}, y){label}")
        before = logits.copy()
        layer = _loss_layer(SoftmaxCrossEntropy, smoothing)
        with np.errstate(all="ignore"):
            value = layer.forward(logits, y.copy())
        _unchanged(where, logits, before)
        loss = _loss_value(where, value)
        expected = cross_entropy_reference(logits, y, smoothing)
        if not np.isfinite(loss):
            raise AssertionError(f"{where}: got {loss}, expected {expected:.6g}. "
                                 + (_STABILITY if label else "Is a log taken of 0?"))
        if not np.isclose(loss, expected, rtol=1e-5, atol=1e-7):
            if np.isclose(loss, expected * len(y), rtol=1e-4):
                extra = (f"That is {len(y)} times too large ({len(y)} is the batch size): "
                         "the loss is the MEAN over the batch, not the sum.")
            elif smoothing and np.isclose(loss, cross_entropy_reference(logits, y),
                                          rtol=1e-5, atol=1e-7):
                extra = ("That is the cross-entropy WITHOUT label smoothing: the target puts "
                         "1 - smoothing on the label and smoothing / classes on every class.")
            else:
                extra = ("Expected the mean over the batch of -sum_k q[n, k] log(softmax("
                         "logits)[n, k]), q = (1 - smoothing) * onehot(y) + smoothing / "
                         "classes.")
            raise AssertionError(f"{where}: got {loss:.6g}, expected {expected:.6g}. {extra}")


@answers_own("SoftmaxCrossEntropy")
def check_softmax_ce_backward(SoftmaxCrossEntropy: type, *, seed: int = 105) -> None:
    """``backward()`` is d(mean loss)/d(logits), compared with the numerical gradient.

    Ordinary logits only: stability is graded once, by the forward check.
    """
    rng = _rng(seed)
    for label, logits, y, smoothing in _loss_cases(rng):
        if label:
            continue
        z = logits.copy()
        expected = numerical_gradient(
            lambda z=z, y=y, s=smoothing: cross_entropy_reference(z, y, s), z)
        loss = _loss_layer(SoftmaxCrossEntropy, smoothing)
        where = (f"SoftmaxCrossEntropy(smoothing={smoothing}).backward() (logits of shape "
                 f"{logits.shape})")
        loss.forward(logits.copy(), y.copy())
        grad = _array_result(where, loss.backward())
        _compare(where, grad, expected, batch=len(y), what="d(loss)/d(logits)",
                 hint="The gradient is (softmax(logits) - q) / batch, with q the smoothed "
                 "target: 1 - smoothing on the label plus smoothing / classes on every class.")


# --------------------------------------------------------------------------- training
def spirals_data(n_per_class: int, seed: int = 0):
    """The lab's data: two spirals split 75/25, ``X_train, X_test, y_train, y_test``."""
    X, y = two_spirals(n_per_class, seed=seed)
    return train_test_split(X, y, test_fraction=0.25, seed=seed)


@answers_own("train_spirals")
def check_train_spirals(train_spirals: Callable, sizes: dict[str, Any], *, seed: int = 0,
                        min_accuracy: float = MIN_ACCURACY,
                        result: dict[str, Any] | None = None) -> float:
    """Train with ``train_spirals`` and assert the test accuracy; return it.

    ``sizes`` holds ``n_per_class`` (the data) and the keyword arguments of
    ``train_spirals(X_train, y_train, *, seed, **rest)``, which returns
    ``(predict, history)``; ``predict(X)`` gives one class label per row. ``result``
    (a dict), when given, receives ``predict``, ``history`` and ``accuracy`` *before*
    the accuracy is asserted, so a model that falls short can still be plotted.
    """
    knobs = dict(sizes)
    n_per_class = knobs.pop("n_per_class")
    X_train, X_test, y_train, y_test = spirals_data(n_per_class, seed)
    returned = train_spirals(X_train, y_train, seed=seed, **knobs)
    if not isinstance(returned, tuple) or len(returned) != 2:
        kind = (f"a tuple of {len(returned)}" if isinstance(returned, tuple)
                else type(returned).__name__)
        raise AssertionError(f"train_spirals returned {kind}; expected (predict, history)")
    predict, history = returned
    labels = np.asarray(predict(X_test))
    if labels.shape != y_test.shape:
        raise AssertionError(f"predict(X_test) has shape {labels.shape}; expected one label "
                             f"per test point, shape {y_test.shape}")
    accuracy = float(np.mean(labels == y_test))
    if result is not None:
        result.update(predict=predict, history=history, accuracy=accuracy)
    if not accuracy >= min_accuracy:
        losses = list((history or {}).get("train loss", []))
        last = f"; final train loss {losses[-1]:.4g}" if losses else ""
        settings = ", ".join(f"{k}={v}" for k, v in knobs.items())
        trend = ""
        if len(losses) > 1 and not np.isfinite(losses[-1]):
            trend = " The loss became inf/nan: is the learning rate too large?"
        elif len(losses) > 1 and losses[-1] >= 0.95 * losses[0]:
            trend = (" The loss hardly went down: are W and b of every Linear updated with "
                     "W -= lr * dW and b -= lr * db after backward?")
        raise AssertionError(
            f"two spirals: test accuracy {accuracy:.1%} is below {min_accuracy:.0%} "
            f"({len(y_test)} test points; {settings}{last}).{trend} If the gradient checks "
            "above pass, look at the training step."
        )
    return accuracy
