"""Encoder contracts for every encoder config in conf/encoder/."""
from __future__ import annotations

import urllib.error

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from zoo.compose import config_dir, group_options
from zoo.errors import ConfigError

ENCODERS = group_options("encoder")


def make(name: str, **over):
    node = OmegaConf.load(config_dir() / "encoder" / f"{name}.yaml")
    if "pretrained" in node:
        node.update({"pretrained": False, "input_size": 32})  # offline and fast
    node.update(over)
    return instantiate(node)()


@pytest.mark.parametrize("name", ENCODERS)
def test_image_to_vector_and_grid(name):
    torch.manual_seed(0)
    enc = make(name)
    assert enc.consumes == "image"
    images = torch.rand(2, 3, 32, 32)
    v = enc(images)
    assert v.shape == (2, enc.out_dim)
    grid = enc.grid(images)
    assert grid.dim() == 3 and grid.shape[0] == 2 and grid.shape[2] == enc.grid_dim
    v.sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing, missing  # every parameter gets a gradient (grid-only layers excepted: none)


@pytest.mark.parametrize("name", ENCODERS)
def test_frozen_encoder_has_no_trainable_parameters_and_stays_in_eval(name):
    enc = make(name, freeze=True)
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training  # batch-norm statistics stay fixed
    images = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(enc(images)[:1], enc(images[:1]), rtol=1e-3, atol=1e-4)  # no batch statistics


def test_the_lectures_vgg_stack_is_expressible():
    enc = make("cnn", channels=[64, 128, 256, 512, 512], convs_per_block=2, fc=[4096, 4096], pool_to=1)
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in enc.features if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert len(pools) == 5 and enc.out_dim == 4096


@pytest.mark.parametrize("name", [n for n in ENCODERS if n != "cnn"])
def test_pretrained_weights_offline_give_a_clear_error(name, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"not in the cache.*encoder.pretrained=false"):
        make(name, pretrained=True)
