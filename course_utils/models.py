"""The models the lessons share, so that a notebook shows the idea, not the boilerplate.

* ``mlp``: a multi-layer perceptron of any widths (the Playground's networks, MNIST-1D's
  MLP); ``logistic_regression``: a single linear layer;
* ``ConvNet1D``: the MNIST-1D paper's convolutional network (Greydanus 2020);
* ``DigitsCNN``: a small 2-D convolutional network for scikit-learn's 8×8 digits.

Every constructor validates its arguments and raises ``UsageError`` naming the bad one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import UsageError, check_choice, check_positive

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


def activation_layer(name: str) -> nn.Module:
    """``nn.ReLU()``, ``nn.Tanh()``, ``nn.Sigmoid()`` or ``nn.Identity()`` (``linear``)."""
    check_choice("activation", name, ACTIVATIONS)
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "linear": nn.Identity}[name]()


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name}={value!r} is not valid; it must be a positive integer")
    return int(check_positive(name, value))


def mlp(in_features: int, hidden: Sequence[int], out_features: int,
        activation: str = "relu") -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``: one hidden layer per entry of ``hidden``.

    ``hidden=()`` gives a linear model (logistic regression on logits).
    """
    _check_count("in_features", in_features)
    _check_count("out_features", out_features)
    for i, width in enumerate(hidden):
        _check_count(f"hidden[{i}] (neurons)", width)
    check_choice("activation", activation, ACTIVATIONS)
    layers: list[nn.Module] = []
    width_in = in_features
    for width in hidden:
        layers += [nn.Linear(width_in, width), activation_layer(activation)]
        width_in = width
    layers.append(nn.Linear(width_in, out_features))
    return nn.Sequential(*layers)


def logistic_regression(in_features: int, n_classes: int) -> nn.Sequential:
    """Multinomial logistic regression: one linear layer to the class logits."""
    return mlp(in_features, (), n_classes)


class ConvNet1D(nn.Module):
    """The MNIST-1D paper's CNN: three strided 1-D convolutions, then a linear layer.

    Input (batch, length) or (batch, 1, length); ``channels`` filters per layer with
    kernel sizes 5, 3, 3, stride 2, padding 1, ReLU between them (the ``mnist1d``
    repository's ``ConvBase``, about 5k parameters for length 40).
    """

    def __init__(self, length: int = 40, n_classes: int = 10, channels: int = 25):
        super().__init__()
        _check_count("length", length)
        _check_count("n_classes", n_classes)
        _check_count("channels", channels)
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 1, length)).numel()
        self.head = nn.Linear(flat, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x).flatten(1))


class DigitsCNN(nn.Module):
    """A small CNN for 8×8 digit images (batch, 1, 8, 8): two 3×3 convolutions, pooling."""

    def __init__(self, n_classes: int = 10, channels: int = 16):
        super().__init__()
        _check_count("n_classes", n_classes)
        _check_count("channels", channels)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * channels * 2 * 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.head(self.features(x).flatten(1))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and a residual connection (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet for 32×32 images (CIFAR-shaped): a stem, three stages of basic blocks at
    widths ``width``, ``2·width``, ``4·width`` (strides 1, 2, 2), global pooling, a linear
    head. ``width=16, blocks=1`` is tiny (CPU lessons); ``width=64, blocks=2`` is a
    GPU-sized workload (about 2.8 M parameters, like a wide CIFAR ResNet-20)."""

    def __init__(self, n_classes: int = 10, width: int = 16, blocks: int = 1,
                 in_channels: int = 3):
        super().__init__()
        _check_count("n_classes", n_classes)
        _check_count("width", width)
        _check_count("blocks", blocks)
        _check_count("in_channels", in_channels)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        layers: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(_BasicBlock(c_in, c_out, stride=2 if stage and b == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return self.head(out.mean(dim=(2, 3)))
