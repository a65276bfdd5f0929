"""course_utils.models, train and numpy_mlp: shapes, validation, a loop that learns."""

import numpy as np
import pytest
import torch

from course_utils import data, models, train
from course_utils.checks import numerical_gradient
from course_utils.errors import UsageError
from course_utils.foundations import numpy_mlp


def test_mlp_shapes_and_activations():
    net = models.mlp(7, (5, 3), 2, activation="tanh")
    assert net(torch.zeros(4, 7)).shape == (4, 2)
    assert isinstance(net[1], torch.nn.Tanh) and len(net) == 5
    assert len(models.logistic_regression(40, 10)) == 1
    assert models.count_parameters(models.mlp(2, (), 2)) == 6


@pytest.mark.parametrize("call, name", [
    (lambda: models.mlp(2, (0,), 2), "neurons"),
    (lambda: models.mlp(2, (4,), 2, activation="swish"), "activation"),
    (lambda: models.mlp(0, (4,), 2), "in_features"),
    (lambda: models.ConvNet1D(channels=0), "channels"),
])
def test_models_reject_bad_arguments(call, name):
    with pytest.raises(UsageError, match=name):
        call()


def test_conv_models_shapes():
    net = models.ConvNet1D(length=40, n_classes=10, channels=25)
    assert net(torch.zeros(3, 40)).shape == (3, 10)
    assert net(torch.zeros(3, 1, 40)).shape == (3, 10)
    assert net.head.in_features == 125  # 40 -> 19 -> 10 -> 5 positions, as in the paper
    assert models.DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_fit_learns_gauss_and_records_history():
    X, y = data.playground("gauss", n=400, seed=0)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, seed=0)
    tr, te = train.loaders(Xtr, ytr, Xte, yte, batch_size=32, seed=0)
    torch.manual_seed(0)
    net = models.mlp(2, (8,), 2)
    seen = []
    hist = train.fit(net, tr, te, num_epochs=5, lr=0.01, progress=False,
                     on_epoch=lambda e, h: seen.append(e))
    assert seen == [0, 1, 2, 3, 4] and len(hist.test_accuracy) == 5
    assert hist.test_accuracy[-1] > 0.95 and hist.train_loss[-1] < hist.train_loss[0]
    assert hist.samples == 5 * len(ytr) and hist.samples_per_s > 0
    assert set(hist.curves("accuracy")) == {"train accuracy", "test accuracy"}
    pred = train.predict(net, Xte)
    assert pred.dtype == np.int64 and (pred == yte).mean() == pytest.approx(
        hist.test_accuracy[-1])
    cm = train.confusion_matrix(yte, pred, 2)
    assert cm.sum() == len(yte) and np.trace(cm) == (pred == yte).sum()


def test_fit_is_reproducible_and_bf16_amp_runs():
    X, y = data.playground("xor", n=200, seed=1)

    def run(amp=None):
        torch.manual_seed(0)
        net = models.mlp(2, (8,), 2)
        tr = train.tensor_loader(X, y, batch_size=16, shuffle=True, seed=3)
        return train.fit(net, tr, num_epochs=2, lr=0.01, progress=False, amp=amp)

    assert run().train_loss == run().train_loss
    assert np.isfinite(run("bf16").train_loss[-1])


@pytest.mark.parametrize("kwargs, name", [
    ({"lr": -0.1}, "lr"), ({"lr": 0.1, "optimizer": "lbfgs"}, "optimizer"),
    ({"lr": 0.1, "amp": "fp8"}, "amp"), ({"lr": 0.1, "num_epochs": 0}, "num_epochs"),
    ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
])
def test_fit_rejects_bad_arguments(kwargs, name):
    X, y = data.playground("gauss", n=20)
    tr = train.tensor_loader(X, y, batch_size=4, shuffle=False)
    kwargs = {"num_epochs": 1, **kwargs}
    with pytest.raises(UsageError, match=name):
        train.fit(models.mlp(2, (3,), 2), tr, progress=False, **kwargs)


def test_fit_diverging_says_lr_is_too_large():
    X, y = data.playground("gauss", n=64)
    X = X * 1e4
    tr = train.tensor_loader(X, y, batch_size=8, shuffle=False)
    with pytest.raises(FloatingPointError, match="lr="):
        train.fit(models.mlp(2, (16, 16), 2), tr, num_epochs=3, lr=1e6, optimizer="sgd",
                  progress=False)


def test_loader_rejects_zero_batch():
    with pytest.raises(UsageError, match="batch_size"):
        train.tensor_loader(np.zeros((3, 2)), np.zeros(3), batch_size=0, shuffle=False)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_mlp_backward_matches_numerical_gradient(activation):
    rng = np.random.default_rng(0)
    params = numpy_mlp.init_params([3, 5, 4, 2], rng, activation, dtype=np.float64)
    for k in params:
        if k.startswith("b"):
            params[k] = rng.normal(scale=0.1, size=params[k].shape)
    X = rng.normal(size=(7, 3))
    y = rng.integers(0, 2, 7)
    _, grads = numpy_mlp.loss_and_grads(params, X, y, activation)
    for name, value in params.items():
        numeric = numerical_gradient(
            lambda: numpy_mlp.loss_and_grads(params, X, y, activation)[0], value)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8)


def test_small_resnet_shapes_and_learnable_synthetic_images():
    X, y = data.synthetic_images(64, seed=0)
    assert X.shape == (64, 3, 32, 32) and X.dtype == np.float32 and y.max() < 10
    net = models.SmallResNet(width=8, blocks=1)
    assert net(torch.as_tensor(X[:4])).shape == (4, 10)
    assert 2e6 < models.count_parameters(models.SmallResNet(width=64, blocks=2)) < 4e6
    torch.manual_seed(0)
    tr = train.tensor_loader(X, y, batch_size=16, shuffle=True)
    hist = train.fit(net, tr, num_epochs=3, lr=0.01, progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(UsageError, match="width"):
        models.SmallResNet(width=0)


def test_tensor_loader_gives_the_batches_of_a_plain_dataloader():
    X = np.arange(46, dtype=np.float32).reshape(23, 2)
    y = np.arange(23)
    fast = train.tensor_loader(X, y, batch_size=5, shuffle=True, seed=7)
    plain = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=5,
        shuffle=True, generator=torch.Generator().manual_seed(7))
    assert len(fast) == len(plain) == 5
    for (xa, ya), (xb, yb) in zip(fast, plain, strict=True):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
    ordered = [yb.tolist() for _, yb in train.tensor_loader(X, y, batch_size=10, shuffle=False)]
    assert ordered == [list(range(10)), list(range(10, 20)), [20, 21, 22]]
