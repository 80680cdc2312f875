"""Tiny classifiers that exercise each way a network can apply a nonlinearity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReusedReLUNet(nn.Module):
    """One ``nn.ReLU`` module called three times per forward (like torchvision's ResNet blocks)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        a = self.relu(self.conv1(x))
        b = self.relu(self.conv2(a))
        return self.fc(self.relu(b + a).mean((2, 3)))


class FunctionalNet(nn.Module):
    """Activations invisible to module hooks: ``F.relu``, ``torch.relu``, ``Tensor.relu_`` (in place) and
    ``F.relu(inplace=True)``."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        a = F.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        c = self.conv3(b).relu_()
        d = F.relu(c + a, inplace=True)
        return self.fc(d.mean((2, 3)))


class SignedNet(nn.Module):
    """Activations that can be negative (LeakyReLU, GELU) beside ReLU6 and an in-place ReLU module."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = nn.GELU()
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.act3 = nn.ReLU6(inplace=True)
        self.bn = nn.BatchNorm2d(4)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.act3(self.bn(self.conv3(x)))
        return self.fc(self.dropout(x.mean((2, 3))))


class TinyCNN(nn.Module):
    """A small but non-trivial classifier for end-to-end runs of the optimisation."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))
