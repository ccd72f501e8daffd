"""ResNet encoders (torchvision): the pooled last stage is v."""
from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision import models

from zoo.encoders.backbone import BackboneEncoder


class ResNetEncoder(BackboneEncoder):
    """A torchvision ResNet without its classifier: (B, 3, H, W) -> (B, 512 or 2048)."""

    builders: ClassVar[dict] = {
        "resnet18": (models.resnet18, models.ResNet18_Weights),
        "resnet34": (models.resnet34, models.ResNet34_Weights),
        "resnet50": (models.resnet50, models.ResNet50_Weights),
        "resnet101": (models.resnet101, models.ResNet101_Weights),
    }

    def __init__(self, *, arch: str = "resnet18", pretrained: bool = True, freeze: bool = False,
                 input_size: int | None = 224, **options) -> None:  # options: BackboneEncoder's
        super().__init__(arch=arch, pretrained=pretrained, freeze=freeze, input_size=input_size, **options)

    @staticmethod
    def split(net):
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        return trunk, nn.Sequential(net.avgpool, nn.Flatten()), net.fc.in_features, net.fc.in_features
