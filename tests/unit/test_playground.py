"""course_utils.foundations.playground: validation, the Playground's penalty, training,
drawing, the app."""

import base64

import numpy as np
import pytest
import torch

from course_utils import data
from course_utils.errors import UsageError
from course_utils.foundations.playground import (
    PlaygroundApp,
    PlaygroundConfig,
    draw,
    parse_hidden,
    render_png,
    train_playground,
    weight_penalty,
)

SMALL = PlaygroundConfig(n_points=120, num_epochs=6, batch_size=20, seed=0)


def test_defaults_are_the_playground_start_page_and_replace_validates():
    cfg = PlaygroundConfig()
    assert (cfg.dataset, cfg.features, cfg.hidden, cfg.activation, cfg.lr) == \
        ("circle", ("x1", "x2"), (4, 2), "tanh", 0.03)
    assert (cfg.train_ratio, cfg.batch_size, cfg.n_points, cfg.regularization) == \
        (0.5, 10, 500, "none")
    xor = cfg.replace(dataset="xor", hidden=[8], features=["x1", "x1*x2"])
    assert xor.hidden == (8,) and xor.features == ("x1", "x1*x2") and cfg.dataset == "circle"
    assert PlaygroundConfig(regularization=None).regularization == "none"
    assert "linear" in cfg.replace(hidden=()).label()
    with pytest.raises(UsageError, match="no field"):
        cfg.replace(neurons=3)


@pytest.mark.parametrize("changes, names", [
    ({"dataset": "moons"}, ["dataset", "circle, xor, gauss, spiral"]),
    ({"activation": "swish"}, ["activation", "relu, tanh, sigmoid, linear"]),
    ({"hidden": (4, 0)}, ["hidden[1]", "neurons", ">= 1"]),
    ({"features": ("x1", "x3")}, ["feature", "'x3'", "x1*x2", "sin(x1)"]),
    ({"features": ()}, ["features", "x1^2"]),
    ({"features": ("x1", "x1")}, ["features", "once"]),
    ({"lr": -0.1}, ["lr=-0.1", "> 0"]),
    ({"lr": 0}, ["lr=0", "> 0"]),
    ({"lr": "fast"}, ["lr='fast'", "number"]),
    ({"reg_rate": -1e-3}, ["reg_rate", ">= 0"]),
    ({"regularization": "L3"}, ["regularization", "none, L1, L2"]),
    ({"noise": 0.6}, ["noise=0.6", "between 0 and 0.5"]),
    ({"train_ratio": 0.95}, ["train_ratio=0.95", "between 0.1 and 0.9"]),
    ({"train_ratio": 0.0}, ["train_ratio", "10 %"]),
    ({"batch_size": 0}, ["batch_size=0", ">= 1"]),
    ({"batch_size": 2.5}, ["batch_size=2.5", "integer"]),
    ({"num_epochs": -3}, ["num_epochs=-3"]),
    ({"n_points": 5}, ["n_points=5", ">= 10"]),
    ({"seed": -1}, ["seed=-1"]),
    ({"optimizer": "rmsprop"}, ["optimizer", "sgd, adam"]),
])
def test_bad_values_name_the_field_and_what_is_allowed(changes, names):
    with pytest.raises(UsageError) as info:
        PlaygroundConfig(**changes)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)


def test_parse_hidden():
    assert parse_hidden("4, 2") == (4, 2)
    assert parse_hidden(" 8 ") == (8,)
    assert parse_hidden("") == () and parse_hidden("  ") == ()
    with pytest.raises(UsageError, match="hidden layers='4,x'.*e.g. '4,2'"):
        parse_hidden("4,x")
    with pytest.raises(UsageError, match=r"hidden\[0\] \(neurons\)=0"):
        parse_hidden("0")


def test_penalty_counts_weights_not_biases():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(-0.5)
    n_weights = 2 * 3 + 3 * 2
    l1 = weight_penalty(net, "L1", 0.1)
    l2 = weight_penalty(net, "L2", 0.1)
    torch.testing.assert_close(l1, torch.tensor(0.1 * 0.5 * n_weights))
    torch.testing.assert_close(l2, torch.tensor(0.1 * 0.5 * 0.25 * n_weights))
    assert float(weight_penalty(net, "none", 0.1)) == 0.0
    l1.backward()
    assert net[0].bias.grad is None or torch.all(net[0].bias.grad == 0)
    torch.testing.assert_close(net[0].weight.grad, torch.full((3, 2), -0.1))  # rate·sign(w)
    with pytest.raises(UsageError, match="regularization"):
        weight_penalty(net, "L0", 0.1)


def test_training_is_reproducible_and_reports_every_epoch():
    seen = []
    first = train_playground(SMALL.replace(dataset="gauss"),
                             on_epoch=lambda e, r: seen.append((e, r.epochs_done)))
    again = train_playground(SMALL.replace(dataset="gauss"))
    assert seen == [(e, e + 1) for e in range(SMALL.num_epochs)]
    assert first.test_loss == again.test_loss and first.train_loss == again.train_loss
    assert len(first.train_accuracy) == SMALL.num_epochs
    assert len(first.y_train) == 60 and len(first.y_test) == 60  # train_ratio 0.5
    assert first.final["test_accuracy"] > 0.95
    labels = first.predict(first.X_test)
    assert labels.dtype == np.int64
    assert (labels == first.y_test).mean() == pytest.approx(first.final["test_accuracy"])
    scores = first.scores(first.X_test)
    assert scores.shape == (60,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_array_equal(scores > 0.5, labels == 1)
    assert first.weights().size == 2 * 4 + 4 * 2 + 2 * 2  # (4, 2) hidden: weights only


def test_train_ratio_and_seed_change_the_split():
    a = train_playground(SMALL.replace(train_ratio=0.8, num_epochs=1))
    b = train_playground(SMALL.replace(train_ratio=0.8, num_epochs=1, seed=1))
    assert len(a.y_train) == 96 and len(a.y_test) == 24
    assert not np.array_equal(a.X_train, b.X_train)


def test_the_playground_lessons_hold_at_small_sizes():
    base = PlaygroundConfig(dataset="xor", n_points=200, batch_size=20, num_epochs=15)
    linear = train_playground(base.replace(hidden=()))
    crossed = train_playground(base.replace(hidden=(), features=("x1", "x2", "x1*x2")))
    assert linear.final["test_accuracy"] < 0.75
    assert crossed.final["test_accuracy"] > 0.9


def test_l1_drives_useless_weights_towards_zero():
    base = PlaygroundConfig(dataset="circle", hidden=(), features=data.PLAYGROUND_FEATURES,
                            n_points=300, batch_size=16, num_epochs=20)
    plain = train_playground(base)
    sparse = train_playground(base.replace(regularization="L1", reg_rate=0.01))
    near_zero = [float(np.mean(np.abs(r.weights()) < 0.02)) for r in (plain, sparse)]
    assert near_zero[1] > near_zero[0] + 0.3
    assert sparse.final["test_accuracy"] > 0.9


def test_bad_config_object_is_a_usage_error():
    with pytest.raises(UsageError, match="PlaygroundConfig"):
        train_playground({"dataset": "xor"})


def test_draw_on_one_or_two_axes_and_render_png():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = train_playground(SMALL.replace(num_epochs=2))
    fig, axes = plt.subplots(1, 3)
    draw(result, axes[0], resolution=20)
    assert "test acc" in axes[0].get_title()
    draw(result, axes[1:], resolution=20, title="custom", show_train=True)
    assert axes[1].get_title() == "custom" and len(axes[2].lines) == 2  # train, test loss
    with pytest.raises(UsageError, match="axes"):
        draw(result, [])
    plt.close(fig)
    png = render_png(result, resolution=20, dpi=30, hardware="test machine")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _png_of(app):
    (output,) = app.output.outputs
    return base64.b64decode(output["data"]["image/png"])


def test_app_trains_redraws_and_retrains_when_a_control_changes():
    app = PlaygroundApp(SMALL.replace(num_epochs=4), redraw_every=2, resolution=20, dpi=30)
    assert app.trainings == 1 and app.redraws == 2  # one while training, one at the end
    assert app.result.config.dataset == "circle" and "done: epoch 4/4" in app.status.value
    assert PlaygroundApp.FIGURE_CLASS in app.output._dom_classes
    assert PlaygroundApp.STATUS_CLASS in app.status._dom_classes
    before, first_png = app.result, _png_of(app)

    app.dataset.value = "xor"  # what a student does in the browser
    assert app.trainings == 2 and app.redraws == 4
    assert app.result is not before and app.result.config.dataset == "xor"
    assert _png_of(app) != first_png

    app.lr.value = 0.1
    assert app.trainings == 3 and app.result.config.lr == pytest.approx(0.1)
    app.train_button.click()
    assert app.trainings == 4
    app.regularization.value = "L2"
    assert app.result.config.regularization == "L2" and app.result.config.reg_rate > 0
    app.features.value = ("x1", "x2", "x1*x2")
    app.hidden.value = ""
    assert app.result.config.hidden == () and app.result.config.features[-1] == "x1*x2"
    assert app.error.value == ""


@pytest.mark.parametrize("control, value, name", [
    ("hidden", "4,x", "hidden layers"),
    ("hidden", "4,0", "neurons"),
    ("features", (), "features"),
])
def test_app_shows_bad_values_as_one_line_not_a_traceback(control, value, name):
    app = PlaygroundApp(SMALL.replace(num_epochs=2), resolution=20, dpi=30)
    result, redraws = app.result, app.redraws
    getattr(app, control).value = value  # must not raise
    assert name in app.last_error and "\n" not in app.last_error
    assert name in app.error.value and "Traceback" not in app.error.value
    assert app.result is result and app.redraws == redraws
    app.hidden.value, app.features.value = "3", ("x1", "x2")  # a good value clears it
    assert app.error.value == "" and app.result.config.hidden == (3,)


def test_app_without_initial_training_and_its_display():
    app = PlaygroundApp(SMALL, train_now=False)
    assert app.result is None and app.redraws == 0 and app.output.outputs == ()
    assert app.config() == SMALL.replace(reg_rate=0.0)
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(UsageError, match="redraw_every"):
        PlaygroundApp(SMALL, redraw_every=0, train_now=False)


def test_training_uses_one_cpu_thread_and_restores_the_setting():
    before = torch.get_num_threads()
    seen = []
    train_playground(SMALL.replace(num_epochs=1),
                     on_epoch=lambda e, r: seen.append(torch.get_num_threads()))
    assert seen == [1] and torch.get_num_threads() == before
    train_playground(SMALL.replace(num_epochs=1), threads=None,
                     on_epoch=lambda e, r: seen.append(torch.get_num_threads()))
    assert seen[-1] == before
    with pytest.raises(UsageError, match="threads"):
        train_playground(SMALL, threads=0)
