"""ResNet encoders (torchvision): the pooled last stage is v."""
from __future__ import annotations

from torch import nn
from torchvision import models

from zoo.encoders.backbone import BackboneEncoder, load_weights

_BUILDERS = {
    "resnet18": (models.resnet18, models.ResNet18_Weights),
    "resnet34": (models.resnet34, models.ResNet34_Weights),
    "resnet50": (models.resnet50, models.ResNet50_Weights),
    "resnet101": (models.resnet101, models.ResNet101_Weights),
}


class ResNetEncoder(BackboneEncoder):
    """A torchvision ResNet without its classifier: (B, 3, H, W) -> (B, 512 or 2048)."""

    def __init__(self, *, arch: str = "resnet18", pretrained: bool = True, freeze: bool = False,
                 input_size: int | None = 224) -> None:
        super().__init__(input_size=input_size, freeze=freeze)
        if arch not in _BUILDERS:
            raise ValueError(f"encoder.arch must be one of {sorted(_BUILDERS)}, got {arch!r}")
        builder, weights = _BUILDERS[arch]
        net = load_weights(arch, builder, weights) if pretrained else builder(weights=None)
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        self.head = nn.Sequential(net.avgpool, nn.Flatten())
        self.out_dim = self.grid_dim = net.fc.in_features
        self._freeze()
