"""Pretrained backbones as image encoders: weights (downloaded, packaged or a local file), the
weights' own preprocessing, and freezing in one place."""
from __future__ import annotations

import inspect

import logging
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from zoo.encoders.transform import InputTransform
from zoo.errors import ConfigError

log = logging.getLogger(__name__)

#: how forward turns the data's images into the network's input (``encoder.recipe``)
RECIPES = {
    "weights": "the weights' own: shorter side resized (256 for 224), then the centre crop encoder.input_size",
    "resize": "the whole image resized to encoder.input_size x encoder.input_size, no crop",
}


def load_weights(arch: str, builder, weights_enum) -> nn.Module:
    """Build ``arch`` with torchvision's default weights, or say clearly why it cannot."""
    weights = weights_enum.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return builder(weights=weights)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        if cached.exists() and cached.stat().st_size < 1024:
            cached.unlink()  # a failed download leaves a stub behind
        raise ConfigError(
            f"encoder={arch} with encoder.pretrained=true needs torchvision's weights {weights} "
            f"({weights.url}), which are not in the cache ({cached}) and could not be downloaded ({e}). "
            f"Connect to the internet once, or copy the file to {cached} (or give it as encoder.weights=PATH), "
            f"or train from scratch with encoder.pretrained=false"
        ) from e


def read_state_dict(path: str | Path, what: str, otherwise: str = "") -> dict[str, Tensor]:
    """A state dict (names -> tensors) from ``path``, read with ``torch.load(weights_only=True)``;
    else a ConfigError that says what the file is instead, ending in ``otherwise`` (the way out)."""
    file = Path(path).expanduser()
    save = "torch.save(model.state_dict(), PATH)"
    if not file.is_file():
        raise ConfigError(f"{what}: no such file {file.absolute()}. Give the path of a state dict saved with "
                          f"{save}{otherwise}")
    try:
        sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or pickled objects weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{what}: {file} does not load with torch.load(weights_only=True) "
                          f"({type(e).__name__}: {first[:200]}). It must be a state dict saved with {save}; "
                          f"from a training checkpoint (.ckpt) save its 'state_dict' with the network's own keys"
                          f"{otherwise}") from e
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        raise ConfigError(f"{what}: {file} is a training checkpoint (it holds 'state_dict' among "
                          f"{sorted(map(str, sd))[:6]}), not a state dict: save torch.save(ckpt['state_dict'], PATH) "
                          f"with the network's own keys{otherwise}")
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        kind = type(sd).__name__ if not isinstance(sd, Mapping) else "mapping that is not names -> tensors"
        raise ConfigError(f"{what}: {file} holds a {kind}, not a state dict (parameter names -> tensors). "
                          f"Save one with {save}{otherwise}")
    return dict(sd)


def fit_state_dict(net: nn.Module, sd: Mapping[str, Tensor], what: str, unused: frozenset[str] = frozenset(),
                   show: int = 5) -> None:
    """Load ``sd`` into ``net`` when every key and shape fits; else a ConfigError naming the first
    misfits. Keys in ``unused`` (the classifier an encoder drops) may be absent or of another shape."""
    own = {k: v for k, v in net.state_dict().items() if k not in unused}
    sd = {k: v for k, v in sd.items() if k not in unused}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} (the network's is {tuple(own[k].shape)})"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(items)} {label}: {', '.join(items[:show])}{', ...' if len(items) > show else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if items]
        hint = ""
        prefix = unexpected[0].split(".")[0] + "." if unexpected else ""
        if prefix and all(k.startswith(prefix) and (k[len(prefix):] in own or k[len(prefix):] in unused) for k in unexpected):
            hint = f" Its keys carry the prefix {prefix!r} (a wrapped model): save the inner model's state_dict()."
        raise ConfigError(f"{what} does not fit the network ({len(sd)} tensors in the file, {len(own)} in the "
                          f"network): {'; '.join(parts)}.{hint}")
    net.load_state_dict(sd, strict=False)  # every kept key is there (checked): only ``unused`` ones may not be


def unused_keys(net: nn.Module, *kept: nn.Module) -> frozenset[str]:
    """The state-dict keys of ``net`` that belong to none of the ``kept`` modules (its classifier)."""
    used = {id(m) for part in kept for m in part.modules()}
    return frozenset(f"{name}.{key}" if name else key for name, m in net.named_modules() if id(m) not in used
                     for key in m.state_dict(keep_vars=True) if "." not in key)


class BackboneEncoder(nn.Module):
    """Base of the pretrained image encoders: weights, the weights' preprocessing, freezing.

    A family names its architectures in ``builders`` (arch -> (torchvision builder, weights
    enum)) and says in ``split`` how a network divides into ``trunk`` (preprocessed images ->
    grid (B, C, h, w)) and ``head`` (grid -> (B, out_dim)). A family whose weights are not
    torchvision's overrides ``network`` (build, with its weights) and ``weights_recipe``.

    ``weights`` (a state dict file) replaces the downloaded or packaged weights. ``input_transform``
    (:class:`~zoo.encoders.transform.InputTransform`) is everything between the data's images and
    the network: the resize, crop and normalisation forward applies, and ``image_size``, the side
    at which the data's images need no resize (``data.image_size`` for the weights' exact recipe).
    """

    consumes = "image"
    produces = "vector"
    builders: ClassVar[dict[str, tuple[Callable, Any]]] = {}

    def __init__(self, *, arch: str, pretrained: bool, freeze: bool, input_size: int | None,
                 weights: str | None = None, recipe: str = "weights", finetune_after: int | None = None,
                 finetune_blocks: int = 1, lr: float | None = None) -> None:
        super().__init__()
        if arch not in self.builders:
            raise ConfigError(f"encoder.arch must be one of {sorted(self.builders)}, got {arch!r}")
        if recipe not in RECIPES:
            raise ConfigError(f"encoder.recipe must be one of {sorted(RECIPES)} "
                              f"({'; '.join(f'{k}: {v}' for k, v in RECIPES.items())}), got {recipe!r}")
        net = self.network(arch, pretrained=pretrained and not weights)  # a local file replaces downloads
        self.trunk, self.head, self.out_dim, self.grid_dim = self.split(net)
        if weights:  # into the whole network: the file has its names; the dropped classifier may differ or lack
            otherwise = (". Or leave encoder.weights out: encoder.pretrained=true for the family's own ImageNet "
                         "weights, encoder.pretrained=false to train from scratch")
            what = f"encoder.weights={weights}"
            fit_state_dict(net, read_state_dict(weights, what, otherwise), what, unused_keys(net, self.trunk, self.head))
            log.info("encoder %s: weights from %s", arch, weights)
        self.input_transform = self.transform_for(arch, input_size, recipe)
        self.frozen, self.finetune_after, self.lr = freeze, finetune_after, lr
        if freeze:  # a fixed function of the image from the start: no gradients, BN statistics never updated
            self.requires_grad_(False)
            self.eval()
        # fine-tuning: frozen (and cached) for the first finetune_after epochs, then the last blocks train
        if finetune_after is not None:
            if not freeze:
                raise ConfigError(f"encoder.finetune_after={finetune_after} needs encoder.freeze=true: the encoder is "
                                  f"frozen for the first {finetune_after} epochs, then its last blocks are trained")
            if finetune_after < 0:
                raise ConfigError(f"encoder.finetune_after must be an epoch (>= 0), got {finetune_after}")
            n = len(self.blocks())
            if not 1 <= finetune_blocks <= n:
                raise ConfigError(f"encoder.finetune_blocks must be 1..{n} (encoder={arch} has {n} blocks), got {finetune_blocks}")
        if lr is not None and finetune_after is None:
            raise ConfigError("encoder.lr is the learning rate of the fine-tuned blocks: set encoder.finetune_after=N too")
        self.finetune_blocks = finetune_blocks

    def blocks(self) -> list[nn.Module]:
        """The network's blocks with parameters, input to output (a batch norm goes with the layer
        before it): what fine-tuning unfreezes from the end (ResNet: a stage; VGG: a conv layer,
        then the classifier's FC layers; EfficientNet: an MBConv block)."""
        out: list[list[nn.Module]] = []
        for m in [*self.trunk.children(), self.head]:
            if not any(True for _ in m.parameters()):
                continue
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and out:
                out[-1].append(m)
            else:
                out.append([m])
        return [group[0] if len(group) == 1 else nn.ModuleList(group) for group in out]

    def finetune_parameters(self) -> list[nn.Parameter]:
        """The parameters of the last ``finetune_blocks`` blocks (none without fine-tuning)."""
        if self.finetune_after is None:
            return []
        return [p for block in self.blocks()[-self.finetune_blocks:] for p in block.parameters()]

    def start_finetuning(self) -> None:
        """The last blocks train from now on; batch-norm statistics stay the pretrained ones."""
        self.frozen = False
        for p in self.finetune_parameters():
            p.requires_grad_(True)

    @classmethod
    def network(cls, arch: str, pretrained: bool) -> nn.Module:
        """The whole network of ``arch`` (classifier included), with its pretrained weights or none."""
        builder, weights = cls.builders[arch]
        return load_weights(arch, builder, weights) if pretrained else builder(weights=None)

    @classmethod
    def weights_recipe(cls, arch: str) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
        """(resize, crop, mean, std) the weights were trained and evaluated with (torchvision's metadata)."""
        t = cls.builders[arch][1].DEFAULT.transforms()
        return t.resize_size[0], t.crop_size[0], tuple(t.mean), tuple(t.std)

    @classmethod
    def requested_image_size(cls, **config) -> int | None:
        """The side asked of the data when ``data.image_size`` is null: the weights' resize side
        (256 for a 224 crop), read from the config alone (nothing is built or loaded)."""
        defaults = {name: param.default for klass in reversed(cls.__mro__) if "__init__" in vars(klass)
                    for name, param in inspect.signature(klass.__init__).parameters.items()
                    if param.default is not inspect.Parameter.empty}
        options = {**defaults, **config}
        return cls.transform_for(options["arch"], options["input_size"], options["recipe"]).image_size

    @classmethod
    def transform_for(cls, arch: str, input_size: int | None, recipe: str) -> InputTransform:
        """What forward does to an image before the network, by ``encoder.recipe`` (:data:`RECIPES`)."""
        resize, crop, mean, std = cls.weights_recipe(arch)
        if input_size is None:  # the data's images as they are, only normalised
            return InputTransform(None, None, None, mean, std)
        if recipe == "resize":
            return InputTransform(input_size, input_size, None, mean, std)
        side = round(input_size * resize / crop)  # the weights' ratio, at any network input size
        return InputTransform(side, side, input_size, mean, std)

    @staticmethod
    def split(net: nn.Module) -> tuple[nn.Module, nn.Module, int, int]:
        """(trunk, head, out_dim, grid_dim) of a network."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> BackboneEncoder:
        super().train(mode and not self.frozen)  # a frozen encoder keeps its BN statistics
        if self.finetune_after is not None:  # and so does a fine-tuned one: small batches would spoil them
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, out_dim)."""
        return self.head(self.trunk(self.input_transform(images)))

    def grid(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, N, grid_dim): one feature per cell of the last feature map."""
        return self.trunk(self.input_transform(images)).flatten(2).transpose(1, 2)
