"""The TensorFlow Playground (playground.tensorflow.org) as Python: one training function and
an ipywidgets interface on top of it.

* ``PlaygroundConfig`` holds every control of the Playground (data set, input features,
  hidden layers, activation, learning rate, regularisation, noise, train/test ratio, batch
  size) and validates them: a bad value raises ``UsageError`` naming the control and what
  is allowed.
* ``train_playground(config)`` generates the data, trains the network with
  ``course_utils.train.fit`` and returns a ``PlaygroundResult`` (the model, loss curves,
  accuracies and a ``predict`` on raw 2-D points). It needs no widgets, so papermill and CI
  can render a static grid of configurations with ``draw``.
* ``PlaygroundApp`` is the interactive version: changing a control retrains and redraws
  the decision boundary and the train/test loss every few epochs while it trains.

Differences from the Playground, on purpose: the network ends in two logits trained with
cross-entropy (the Playground: one tanh output with squared error), and the default
optimizer is Adam (the Playground: plain SGD), which trains these small networks reliably
in few epochs. Regularisation is the Playground's: a penalty on the weights only, never
on the biases (see ``weight_penalty``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import data, models, train
from ..errors import CourseError, UsageError, check_choice

REGULARIZATIONS = ("none", "L1", "L2")
TRAIN_RATIO_RANGE = (0.1, 0.9)  # the Playground's slider: 10 % to 90 % training data
NOISE_RANGE = (0.0, 0.5)  # the Playground's slider: 0 % to 50 %
MIN_POINTS = 10


# ------------------------------------------------------------------ validation helpers
def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum``; else UsageError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= {minimum}")
    return int(value)


def _check_real(name: str, value: Any, lo: float, hi: float | None = None, *,
                open_lo: bool = False, hint: str = "") -> float:
    """``value`` as a float in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``), else UsageError."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
          and np.isfinite(float(value)))
    if ok:
        v = float(value)
        ok = (v > lo if open_lo else v >= lo) and (hi is None or v <= hi)
    if not ok:
        if hi is None:
            bound = f"> {lo:g}" if open_lo else f">= {lo:g}"
        else:
            bound = f"between {lo:g} and {hi:g}"
        raise UsageError(f"{name}={value!r} is not valid; it must be a number {bound}{hint}")
    return float(value)


def parse_hidden(text: str) -> tuple[int, ...]:
    """Neurons per hidden layer from text like ``"4, 2"``; ``""`` means no hidden layer."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if parts == [""]:
        return ()
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"hidden layers={text!r} is not valid; write the neurons of each layer separated "
            "by commas, e.g. '4,2' (leave it empty for a linear model)") from None
    for i, width in enumerate(widths):
        check_int(f"hidden[{i}] (neurons)", width, 1)
    return widths


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class PlaygroundConfig:
    """Every control of the Playground; validated on construction (``UsageError``).

    Defaults are the Playground's own start page, except ``num_epochs``, ``optimizer`` and
    ``reg_rate`` (the Playground keeps its last rate when regularisation is off).
    """

    dataset: str = "circle"  # one of data.PLAYGROUND_DATASETS
    features: tuple[str, ...] = ("x1", "x2")  # input features, data.PLAYGROUND_FEATURES
    hidden: tuple[int, ...] = (4, 2)  # neurons per hidden layer; () is a linear model
    activation: str = "tanh"  # models.ACTIVATIONS
    lr: float = 0.03  # learning rate
    regularization: str = "none"  # "none", "L1" or "L2" (None means "none")
    reg_rate: float = 0.0  # regularisation rate (the penalty's weight)
    noise: float = 0.0  # 0 to 0.5
    train_ratio: float = 0.5  # fraction of the points used for training, 0.1 to 0.9
    batch_size: int = 10
    num_epochs: int = 100
    n_points: int = 500  # points of the data set, train and test together
    seed: int = 0  # data, split, shuffling and initial weights
    optimizer: str = "adam"  # train.OPTIMIZERS

    def __post_init__(self) -> None:
        # Accept lists (widgets give tuples, people type lists) and None for "no penalty".
        if isinstance(self.features, str):
            object.__setattr__(self, "features", (self.features,))
        object.__setattr__(self, "features", tuple(self.features))
        if isinstance(self.hidden, numbers.Integral):
            object.__setattr__(self, "hidden", (self.hidden,))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.regularization is None:
            object.__setattr__(self, "regularization", "none")
        self.validate()

    def validate(self) -> PlaygroundConfig:
        """Raise ``UsageError`` naming the first bad field and what it allows."""
        check_choice("dataset", self.dataset, data.PLAYGROUND_DATASETS)
        if not self.features:
            raise UsageError("features=() is not valid; choose at least one of: "
                             + ", ".join(data.PLAYGROUND_FEATURES))
        for name in self.features:
            check_choice("feature", name, data.PLAYGROUND_FEATURES)
        if len(set(self.features)) != len(self.features):
            raise UsageError(f"features={self.features!r} is not valid; each feature once")
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}] (neurons)", width, 1)
        check_choice("activation", self.activation, models.ACTIVATIONS)
        _check_real("lr", self.lr, 0.0, open_lo=True)
        check_choice("regularization", self.regularization, REGULARIZATIONS)
        _check_real("reg_rate", self.reg_rate, 0.0)
        _check_real("noise", self.noise, *NOISE_RANGE, hint=" (the Playground's 0 % to 50 %)")
        _check_real("train_ratio", self.train_ratio, *TRAIN_RATIO_RANGE,
                    hint=" (the Playground's 10 % to 90 %)")
        check_int("batch_size", self.batch_size, 1)
        check_int("num_epochs", self.num_epochs, 1)
        check_int("n_points", self.n_points, MIN_POINTS)
        check_int("seed", self.seed, 0)
        check_choice("optimizer", self.optimizer, train.OPTIMIZERS)
        return self

    def replace(self, **changes: Any) -> PlaygroundConfig:
        """A copy with some fields changed (validated): ``cfg.replace(dataset="xor")``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UsageError(f"PlaygroundConfig has no field(s) {sorted(unknown)}; known: "
                             + ", ".join(f.name for f in dataclasses.fields(self)))
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """A short description for plot titles: hidden layers, activation, features."""
        net = "linear" if not self.hidden else "-".join(map(str, self.hidden)) + " " \
            + self.activation
        reg = "" if self.regularization == "none" else f", {self.regularization} {self.reg_rate:g}"
        return f"{net} | {', '.join(self.features)}{reg}"


# ------------------------------------------------------------------ training
def weight_penalty(net: nn.Module, kind: str, rate: float) -> torch.Tensor:
    """The Playground's regularisation term: ``rate·Σ|w|`` (L1) or ``rate·Σ w²/2`` (L2).

    Only the weight matrices count, not the biases, exactly as in the Playground, whose
    update applies ``lr·rate·sign(w)`` or ``lr·rate·w`` to the weights alone. (That is why
    this is a penalty added to the loss and not the optimizer's ``weight_decay``: PyTorch's
    ``weight_decay`` shrinks the biases too, and with Adam it is rescaled per weight.)
    """
    check_choice("regularization", kind, REGULARIZATIONS)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    if kind == "none" or rate == 0 or not weights:
        return torch.zeros((), device=weights[0].device if weights else None)
    if kind == "L1":
        return rate * sum(w.abs().sum() for w in weights)
    return rate * 0.5 * sum((w * w).sum() for w in weights)


@dataclass
class PlaygroundResult:
    """A trained Playground network and what the Playground's screen shows about it.

    ``train_loss``/``test_loss`` hold the cross-entropy on the whole training/test set after
    every epoch (without the penalty, like the Playground's "Training loss"/"Test loss").
    """

    config: PlaygroundConfig
    net: nn.Module
    X_train: np.ndarray  # raw 2-D points
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    device: str = "cpu"
    history: train.History | None = None
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.test_loss)

    @property
    def final(self) -> dict[str, float]:
        """Last epoch's train/test loss and accuracy."""
        return {"train_loss": self.train_loss[-1], "test_loss": self.test_loss[-1],
                "train_accuracy": self.train_accuracy[-1],
                "test_accuracy": self.test_accuracy[-1]}

    def features(self, points: np.ndarray) -> np.ndarray:
        """The configured input features of raw (n, 2) points."""
        return data.playground_features(np.asarray(points, np.float32), self.config.features)

    @torch.no_grad()
    def scores(self, points: np.ndarray) -> np.ndarray:
        """Probability of class 1 for raw (n, 2) points (for shaded decision boundaries)."""
        self.net.eval()
        inputs = torch.as_tensor(self.features(points)).to(self.device)
        return torch.softmax(self.net(inputs), dim=1)[:, 1].float().cpu().numpy()

    def predict(self, points: np.ndarray) -> np.ndarray:
        """Class labels (0/1, int64) for raw (n, 2) points: features, then the network."""
        return train.predict(self.net, self.features(points), device=self.device)

    def weights(self) -> np.ndarray:
        """All weights (biases excluded), flattened: what L1/L2 regularisation acts on."""
        return torch.cat([p.detach().flatten().cpu() for name, p in
                          self.net.named_parameters() if name.endswith("weight")]).numpy()


def make_data(config: PlaygroundConfig) -> tuple[np.ndarray, ...]:
    """``X_train, X_test, y_train, y_test`` (raw 2-D points) of a configuration."""
    X, y = data.playground(config.dataset, n=config.n_points, noise=config.noise,
                           seed=config.seed)
    return data.train_test_split(X, y, test_fraction=1.0 - config.train_ratio,
                                 seed=config.seed)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` PyTorch CPU threads (``None``: leave as is), then restore."""
    if n is None:
        yield
        return
    check_int("threads", n, 1)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_playground(config: PlaygroundConfig, *, device: str | torch.device = "cpu",
                     on_epoch: Callable[[int, PlaygroundResult], None] | None = None,
                     progress: bool = False, threads: int | None = 1) -> PlaygroundResult:
    """Train one Playground configuration from scratch; reproducible from ``config.seed``.

    ``on_epoch(epoch, result)`` is called after every epoch with the result so far (the
    network is live, the curves grow), e.g. to redraw a figure. Raises ``UsageError`` for a
    bad configuration and ``FloatingPointError`` when the loss diverges (lr too large).

    ``threads``: PyTorch CPU threads during the run, 1 by default. A step of these networks
    is a few microseconds of arithmetic; splitting it across threads only adds
    synchronisation, and on a busy machine (a shared CI runner) it makes training many
    times slower. ``None`` keeps the current setting.
    """
    if not isinstance(config, PlaygroundConfig):
        raise UsageError(f"config={config!r} is not valid; pass a PlaygroundConfig")
    config.validate()
    with cpu_threads(threads):
        return _train(config, device, on_epoch, progress)


def _train(config: PlaygroundConfig, device: str | torch.device,
           on_epoch: Callable[[int, PlaygroundResult], None] | None,
           progress: bool) -> PlaygroundResult:
    device = str(torch.device(device))
    X_train, X_test, y_train, y_test = make_data(config)
    F_train = data.playground_features(X_train, config.features)
    F_test = data.playground_features(X_test, config.features)
    with torch.random.fork_rng(devices=[]):  # same initial weights for the same seed
        torch.manual_seed(config.seed)
        net = models.mlp(len(config.features), config.hidden, 2, config.activation)
    net.to(device)
    result = PlaygroundResult(config, net, X_train, y_train, X_test, y_test, device)
    train_loader, test_loader = train.loaders(F_train, y_train, F_test, y_test,
                                              batch_size=config.batch_size, seed=config.seed)
    train_eval = train.tensor_loader(F_train, y_train, batch_size=1024, shuffle=False)

    def after_epoch(epoch: int, history: train.History) -> None:
        loss, accuracy = train.evaluate(net, train_eval, device)
        result.history = history
        result.train_loss.append(loss)
        result.train_accuracy.append(accuracy)
        result.test_loss.append(history.test_loss[-1])
        result.test_accuracy.append(history.test_accuracy[-1])
        if on_epoch is not None:
            on_epoch(epoch, result)

    penalty = None
    if config.regularization != "none" and config.reg_rate > 0:
        def penalty(model: nn.Module) -> torch.Tensor:
            return weight_penalty(model, config.regularization, config.reg_rate)

    result.history = train.fit(net, train_loader, test_loader, num_epochs=config.num_epochs,
                               lr=config.lr, optimizer=config.optimizer, device=device,
                               progress=progress, on_epoch=after_epoch, regularizer=penalty)
    return result


# ------------------------------------------------------------------ drawing
def draw(result: PlaygroundResult, axes: Any, *, resolution: int = 120,
         title: str | None = None, show_train: bool = False) -> Any:
    """The Playground's output panel: decision boundary with the test points, then the loss.

    Test points have black edges; with ``show_train`` the training points are added with
    white edges, as in the Playground.

    ``axes`` is one matplotlib Axes (boundary only, for grids) or a pair (boundary, loss
    curves). The shading is the probability of class 1 over the Playground's square.
    Returns ``axes``.
    """
    from .. import plots

    ax_list = list(axes) if isinstance(axes, (Sequence, np.ndarray)) else [axes]
    if not 1 <= len(ax_list) <= 2:
        raise UsageError(f"axes has {len(ax_list)} entries; pass one Axes or two")
    ax = ax_list[0]
    if title is None:
        title = (f"{result.config.dataset}: test acc {result.test_accuracy[-1]:.2f}\n"
                 f"{result.config.label()}")
    # A frame of the Playground's square, so every panel covers the same area.
    frame = np.array([[-6.0, -6.0], [6.0, 6.0]], np.float32)
    points = np.concatenate([result.X_test, frame])
    labels = np.concatenate([result.y_test, [0, 0]])
    plots.decision_boundary(result.scores, points, labels, ax=ax, title=title,
                            resolution=resolution, margin=0.3)
    ax.collections[-1].remove()  # drop the scatter that included the two frame points
    ax.scatter(result.X_test[:, 0], result.X_test[:, 1], c=result.y_test, cmap="RdBu",
               s=10, edgecolors="k", linewidths=0.3, vmin=0, vmax=1)
    if show_train:
        ax.scatter(result.X_train[:, 0], result.X_train[:, 1], c=result.y_train,
                   cmap="RdBu", s=14, edgecolors="w", linewidths=0.6, vmin=0, vmax=1)
    ax.set(xlabel="", ylabel="")
    ax.tick_params(labelsize=7)
    if len(ax_list) == 2:
        plots.curves({"train loss": result.train_loss, "test loss": result.test_loss},
                     ax=ax_list[1], ylabel="cross-entropy",
                     title=f"loss after {result.epochs_done} epochs: train "
                           f"{result.train_loss[-1]:.3f}, test {result.test_loss[-1]:.3f}")
    return axes


def render_png(result: PlaygroundResult, *, resolution: int = 100, dpi: int = 80,
               hardware: str = "", show_train: bool = True) -> bytes:
    """``draw`` (training and test points) into a new pyplot-free figure; PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=dpi)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.14, top=0.86, wspace=0.25)
    draw(result, axes, resolution=resolution, show_train=show_train)
    if hardware:
        fig.text(0.99, 0.01, hardware, ha="right", va="bottom", fontsize=7, color="gray")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------ the interactive app
class PlaygroundApp:
    """The Playground's controls as ipywidgets, and a figure redrawn while it trains.

    Every control retrains from scratch when it changes (sliders on release); the Train
    button retrains with the same settings. Training is synchronous: ``on_epoch`` redraws
    the decision boundary and the loss curves every ``redraw_every`` epochs, so no thread
    is involved. A bad value (hidden layers "4,x", zero neurons) or a diverging run shows
    as one line in ``error`` instead of a traceback.

    Frontend-free use (tests): set ``app.dataset.value = "xor"``; the app retrains,
    ``app.redraws`` grows and ``app.result`` is the new model. The figure lives in
    ``app.output`` (CSS class ``hpdl-playground-figure``), the status line in ``app.status``
    (``hpdl-playground-status``), the error line in ``app.error`` (``hpdl-playground-error``).
    """

    FIGURE_CLASS = "hpdl-playground-figure"
    STATUS_CLASS = "hpdl-playground-status"
    ERROR_CLASS = "hpdl-playground-error"

    def __init__(self, config: PlaygroundConfig | None = None, *,
                 device: str | torch.device = "cpu", redraw_every: int | None = None,
                 resolution: int = 80, dpi: int = 80, hardware: str = "",
                 train_now: bool = True):
        import ipywidgets as w

        config = PlaygroundConfig() if config is None else config.validate()
        self.device = str(torch.device(device))
        self.redraw_every = redraw_every
        if redraw_every is not None:
            check_int("redraw_every", redraw_every, 1)
        self.resolution = check_int("resolution", resolution, 10)
        self.dpi = check_int("dpi", dpi, 10)
        self.hardware = hardware
        self.result: PlaygroundResult | None = None
        self.redraws = 0
        self.trainings = 0
        self.last_error = ""

        style = {"description_width": "120px"}
        wide = w.Layout(width="340px")
        self.dataset = w.Dropdown(options=data.PLAYGROUND_DATASETS, value=config.dataset,
                                  description="data set", style=style, layout=wide)
        self.features = w.SelectMultiple(options=data.PLAYGROUND_FEATURES,
                                         value=config.features, rows=len(
                                             data.PLAYGROUND_FEATURES),
                                         description="features", style=style, layout=wide)
        self.hidden = w.Text(value=",".join(map(str, config.hidden)), continuous_update=False,
                             description="hidden layers", placeholder="e.g. 4,2 (empty: linear)",
                             style=style, layout=wide)
        self.activation = w.Dropdown(options=models.ACTIVATIONS, value=config.activation,
                                     description="activation", style=style, layout=wide)
        self.lr = w.FloatLogSlider(value=config.lr, base=10, min=-5, max=1, step=0.1,
                                   continuous_update=False, readout_format=".2g",
                                   description="learning rate", style=style, layout=wide)
        self.regularization = w.Dropdown(options=REGULARIZATIONS, value=config.regularization,
                                         description="regularization", style=style,
                                         layout=wide)
        self.reg_rate = w.FloatLogSlider(value=config.reg_rate if config.reg_rate > 0 else 1e-3,
                                         base=10, min=-5, max=1, step=0.1,
                                         continuous_update=False, readout_format=".2g",
                                         description="reg. rate", style=style, layout=wide)
        self.noise = w.FloatSlider(value=config.noise, min=NOISE_RANGE[0], max=NOISE_RANGE[1],
                                   step=0.05, continuous_update=False, description="noise",
                                   style=style, layout=wide)
        self.train_ratio = w.FloatSlider(value=config.train_ratio, min=TRAIN_RATIO_RANGE[0],
                                         max=TRAIN_RATIO_RANGE[1], step=0.1,
                                         continuous_update=False, description="train ratio",
                                         style=style, layout=wide)
        self.batch_size = w.IntSlider(value=config.batch_size, min=1,
                                      max=max(30, config.batch_size), continuous_update=False,
                                      description="batch size", style=style, layout=wide)
        self.num_epochs = w.IntSlider(value=config.num_epochs, min=1,
                                      max=max(500, config.num_epochs), continuous_update=False,
                                      description="epochs", style=style, layout=wide)
        self.seed = w.BoundedIntText(value=config.seed, min=0, max=2**31 - 1,
                                     description="seed", style=style, layout=wide)
        self.train_button = w.Button(description="Train", button_style="primary",
                                     tooltip="train again from scratch with these settings")
        self.status = w.HTML(value="not trained yet")
        self.status.add_class(self.STATUS_CLASS)
        self.error = w.HTML(value="")
        self.error.add_class(self.ERROR_CLASS)
        self.output = w.Output(layout=w.Layout(min_height="340px"))
        self.output.add_class(self.FIGURE_CLASS)
        self._n_points = config.n_points
        self._optimizer = config.optimizer

        self.controls = (self.dataset, self.features, self.hidden, self.activation, self.lr,
                         self.regularization, self.reg_rate, self.noise, self.train_ratio,
                         self.batch_size, self.num_epochs, self.seed)
        for control in self.controls:
            control.observe(self._on_change, names="value")
        self.train_button.on_click(lambda _button: self.train())
        left = w.VBox([self.dataset, self.features, self.noise, self.train_ratio, self.seed])
        middle = w.VBox([self.hidden, self.activation, self.lr, self.batch_size,
                         self.num_epochs])
        right = w.VBox([self.regularization, self.reg_rate, self.train_button])
        self.widget = w.VBox([w.HBox([left, middle, right]), self.status, self.error,
                              self.output])
        if train_now:
            self.train()

    # -- reading the controls
    def config(self) -> PlaygroundConfig:
        """The configuration the controls show now (``UsageError`` if one is invalid)."""
        regularization = self.regularization.value
        return PlaygroundConfig(
            dataset=self.dataset.value, features=tuple(self.features.value),
            hidden=parse_hidden(self.hidden.value), activation=self.activation.value,
            lr=float(self.lr.value), regularization=regularization,
            reg_rate=float(self.reg_rate.value) if regularization != "none" else 0.0,
            noise=float(self.noise.value), train_ratio=float(self.train_ratio.value),
            batch_size=int(self.batch_size.value), num_epochs=int(self.num_epochs.value),
            n_points=self._n_points, seed=int(self.seed.value), optimizer=self._optimizer)

    # -- training and drawing
    def _on_change(self, change: dict) -> None:
        self.train()

    def _show_error(self, message: str) -> None:
        self.last_error = message
        text = message.splitlines()[0] if message else ""
        self.error.value = (f"<span style='color:#b00020'>{_escape(text)}</span>"
                            if text else "")

    def train(self) -> PlaygroundResult | None:
        """Retrain from scratch with the controls' values; redraw while training.

        Returns the new result, or ``None`` (with the reason in ``error``) when a control's
        value is invalid or the training diverged.
        """
        try:
            config = self.config()
        except CourseError as err:
            self._show_error(str(err))
            return None
        self._show_error("")
        every = self.redraw_every or max(1, config.num_epochs // 10)

        def on_epoch(epoch: int, result: PlaygroundResult) -> None:
            if (epoch + 1) % every == 0 and epoch + 1 < config.num_epochs:
                self._redraw(result, training=True)

        try:
            result = train_playground(config, device=self.device, on_epoch=on_epoch)
        except (CourseError, FloatingPointError) as err:
            self._show_error(f"{type(err).__name__}: {err}")
            return None
        self.result = result
        self.trainings += 1
        self._redraw(result, training=False)
        return result

    def _redraw(self, result: PlaygroundResult, *, training: bool) -> None:
        png = render_png(result, resolution=self.resolution, dpi=self.dpi,
                         hardware=self.hardware)
        self.redraws += 1
        final = result.final
        state = "training" if training else "done"
        self.status.value = (
            f"{state}: epoch {result.epochs_done}/{result.config.num_epochs} | train loss "
            f"{final['train_loss']:.3f} | test loss {final['test_loss']:.3f} | test accuracy "
            f"{final['test_accuracy']:.3f} | redraw {self.redraws}")
        # Replacing the Output's outputs in one step updates the browser without flicker
        # and works without a kernel (tests) as well as inside one.
        self.output.outputs = ({
            "output_type": "display_data",
            "data": {"image/png": base64.b64encode(png).decode("ascii"),
                     "text/plain": f"<Playground figure, redraw {self.redraws}>"},
            "metadata": {},
        },)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
