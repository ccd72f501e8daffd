"""Encoder contracts for every encoder config in conf/encoder/."""
from __future__ import annotations

import urllib.error

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from zoo.data.spec import DataSpec
from zoo.data.vocab import Vocabulary
from zoo.errors import ConfigError
from zoo.run.configs import config_dir, group_options
from zoo.tasks.base import build_encoder

ENCODERS = group_options("encoder")


SPEC = DataSpec(vocab=Vocabulary(["<PAD>", "<START>", "<END>", "<UNK>", "a", "b", "c"]), image_shape=(3, 32, 32))


def make(name: str, **over):
    node = OmegaConf.load(config_dir() / "encoder" / f"{name}.yaml")
    if "pretrained" in node:
        node.update({"pretrained": False, "input_size": 32})  # offline and fast
    node.update(over)
    return build_encoder(instantiate(node), SPEC)


def example(enc) -> torch.Tensor:
    return torch.randint(0, 7, (2, 5)) if enc.consumes == "tokens" else torch.rand(2, 3, 32, 32)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name):
    torch.manual_seed(0)
    enc = make(name)
    assert enc.consumes in ("image", "tokens") and enc.produces in ("vector", "sequence", "glimpse")
    x = example(enc)
    if enc.produces == "glimpse":  # what it sees at a location: (images, where) -> (B, out_dim)
        out = enc(x, torch.zeros(2, enc.where_size))
        assert out.shape == (2, enc.out_dim) and enc.box(torch.zeros(2, enc.where_size)).shape == (2, 4)
    else:
        out = enc(x)
    if enc.produces in ("vector", "glimpse"):
        assert out.shape == (2, enc.out_dim)
    else:
        assert out.dim() == 3 and out.shape[0] == 2 and out.shape[2] == enc.out_dim
    if enc.consumes == "image" and enc.produces == "vector":
        grid = enc.grid(x)
        assert grid.dim() == 3 and grid.shape[0] == 2 and grid.shape[2] == enc.grid_dim
    if any(p.requires_grad for p in enc.parameters()):
        out.float().sum().backward()
        missing = [n for n, p in enc.named_parameters() if p.grad is None]
        assert not missing, missing  # every parameter gets a gradient


@pytest.mark.parametrize("name", [n for n in ENCODERS if "freeze" in OmegaConf.load(config_dir() / "encoder" / f"{n}.yaml")])
def test_frozen_encoder_has_no_trainable_parameters_and_stays_in_eval(name):
    enc = make(name, freeze=True)
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training  # batch-norm statistics stay fixed
    images = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(enc(images)[:1], enc(images[:1]), rtol=1e-3, atol=1e-4)  # no batch statistics


def test_rows_and_patches_read_the_image_in_order():
    img = torch.arange(2 * 3 * 32 * 32, dtype=torch.float).view(2, 3, 32, 32)
    rows = make("rows")(img)
    assert rows.shape == (2, 32, 96) and torch.equal(rows[0, 5, :32], img[0, 0, 5])
    patches = make("patches", patch=8)(img)
    assert patches.shape == (2, 16, 3 * 64)
    torch.testing.assert_close(patches[0, 1].view(3, 8, 8), img[0, :, :8, 8:16])


def test_word_dropout_only_in_training():
    enc = make("embedding", word_dropout=0.5, dropout=0.0)
    tokens = torch.randint(4, 7, (50, 20))
    enc.eval()
    torch.testing.assert_close(enc(tokens), enc.embed(tokens))
    enc.train()
    unk = enc.embed.weight[3]
    replaced = (enc(tokens) == unk).all(-1).float().mean()
    assert 0.4 < replaced < 0.6


def test_the_lectures_vgg_stack_is_expressible():
    enc = make("cnn", channels=[64, 128, 256, 512, 512], convs_per_block=2, fc=[4096, 4096], pool_to=1)
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in enc.features if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert len(pools) == 5 and enc.out_dim == 4096


def downloads_weights(name: str) -> bool:
    """Whether encoder=name's pretrained weights come from torchvision's download (not from a package)."""
    from zoo.encoders.backbone import BackboneEncoder

    node = OmegaConf.load(config_dir() / "encoder" / f"{name}.yaml")
    cls = instantiate(node).func if "pretrained" in node else None
    return cls is not None and cls.network.__func__ is BackboneEncoder.network.__func__


@pytest.mark.parametrize("name", [n for n in ENCODERS if downloads_weights(n)])
def test_pretrained_weights_offline_give_a_clear_error(name, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"not in the cache.*encoder.pretrained=false"):
        make(name, pretrained=True)
