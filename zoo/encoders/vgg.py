"""VGG encoders (torchvision): v is the second FC-4096 layer, as in the lecture's captioner."""
from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision import models

from zoo.encoders.backbone import BackboneEncoder


class VGGEncoder(BackboneEncoder):
    """A torchvision VGG up to FC-4096 -> ReLU (the last classifier layer removed)."""

    builders: ClassVar[dict] = {
        "vgg11": (models.vgg11, models.VGG11_Weights),
        "vgg16": (models.vgg16, models.VGG16_Weights),
        "vgg16_bn": (models.vgg16_bn, models.VGG16_BN_Weights),
        "vgg19": (models.vgg19, models.VGG19_Weights),
    }

    def __init__(self, *, arch: str = "vgg16", pretrained: bool = True, freeze: bool = False,
                 input_size: int | None = 224, **options) -> None:  # options: BackboneEncoder's
        super().__init__(arch=arch, pretrained=pretrained, freeze=freeze, input_size=input_size, **options)

    @staticmethod
    def split(net):
        # avgpool (to 7x7) -> flatten -> FC-4096 -> ReLU -> Dropout -> FC-4096 -> ReLU -> Dropout
        head = nn.Sequential(net.avgpool, nn.Flatten(), *list(net.classifier.children())[:-1])
        return net.features, head, net.classifier[-1].in_features, 512
