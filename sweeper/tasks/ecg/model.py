"""The 1-D SEResNet34 of the ECG study (`shared/protocols/ecg.md` section 3).

Stem ``Conv1d(12, c, 15, stride 2) BN ReLU MaxPool(3, 2)``, then four stages of SE residual
blocks with [3, 4, 6, 3] blocks and widths c, 2c, 4c, 8c (c = `base_channels`, 64 in the
tutorial, giving the 512-d pooled feature), global average pooling, and two heads on the pooled
feature: the classifier ``Dropout(0.2) Linear(8c, n_classes)`` and the age head
``Dropout(0.2) Linear(8c, 1)`` (used by AgeReg, ignored otherwise). Convolutions keep PyTorch's
default bias and initialisation, as the author's code does.
"""

from __future__ import annotations

import torch
from torch import nn

from sweeper.seeds import derive_seed

#: blocks per stage; [3, 4, 6, 3] is the "34" of SEResNet34.
STAGE_BLOCKS = (3, 4, 6, 3)
N_LEADS = 12


class SqueezeExcite(nn.Module):
    """Channel gates: global average, bottleneck (reduction 16), sigmoid, rescale."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate: torch.Tensor = self.gate(x)
        return x * gate


class SEResBlock(nn.Module):
    """Two kernel-7 convolutions with BN, dropout 0.3 between them and an SE gate, plus a skip.

    With `downsample` the block doubles the channels and halves the length, and the skip is a
    strided 1x1 convolution with BN.
    """

    def __init__(self, channels: int, downsample: bool = False) -> None:
        super().__init__()
        out = channels * 2 if downsample else channels
        stride = 2 if downsample else 1
        self.main = nn.Sequential(
            nn.Conv1d(channels, out, 7, stride=stride, padding=3),
            nn.BatchNorm1d(out),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Conv1d(out, out, 7, stride=1, padding=3),
            nn.BatchNorm1d(out),
            SqueezeExcite(out),
        )
        self.skip: nn.Module = (
            nn.Sequential(nn.Conv1d(channels, out, 1, stride=2), nn.BatchNorm1d(out))
            if downsample
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.main(x) + self.skip(x))
        return out


class SEResNet34(nn.Module):
    """1-D SEResNet34 with a classifier head and an age head.

    `forward` maps ``(batch, 12, length)`` to ``(logits (batch, n_classes), age (batch,))``; the
    age output is squeezed to ``(batch,)`` so that an L1 loss against ages of shape ``(batch,)``
    does not broadcast to ``(batch, batch)``.
    """

    def __init__(self, n_classes: int, base_channels: int = 64) -> None:
        super().__init__()
        c = base_channels
        self.stem = nn.Sequential(
            nn.Conv1d(N_LEADS, c, 15, stride=2, padding=7),
            nn.BatchNorm1d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        width = c
        for k, n_blocks in enumerate(STAGE_BLOCKS):
            blocks: list[nn.Module] = []
            if k > 0:
                blocks.append(SEResBlock(width, downsample=True))
                width *= 2
            blocks += [SEResBlock(width) for _ in range(n_blocks - len(blocks))]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.feature_dim = width
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, n_classes))
        self.auxiliary = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, 1))

    def set_age_offset(self, years: float) -> None:
        """Start the age head's output at `years` (its bias), for a short AgeReg schedule."""
        linear = self.auxiliary[-1]
        assert isinstance(linear, nn.Linear)
        with torch.no_grad():
            linear.bias.fill_(years)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.pool(self.stages(self.stem(x))).flatten(1)
        logits: torch.Tensor = self.classifier(feature)
        age: torch.Tensor = self.auxiliary(feature).squeeze(-1)
        return logits, age


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(n_classes: int, base_channels: int, seed: int) -> SEResNet34:
    """The SEResNet34 with PyTorch's default initialisation drawn from the trial seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init", "ecg"))
        return SEResNet34(n_classes, base_channels)
