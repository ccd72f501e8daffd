"""Fine-tuning a pretrained encoder: frozen and cached first, then its last blocks train with
their own learning rate, from images again; a resumed run carries on the same way."""
from __future__ import annotations

import pytest
import torch
from conftest import TINY_CAPTIONING, compose, run_module

from zoo.errors import ConfigError
from zoo.encoders.resnet import ResNetEncoder
from zoo.run.train import train
from zoo.tasks import feature_cache

pytestmark = pytest.mark.slow

OVERRIDES = ["task=captioning", *[o for o in TINY_CAPTIONING if not o.startswith(("encoder.", "trainer.max_epochs"))],
             "encoder=resnet18", "encoder.pretrained=false", "encoder.input_size=32", "encoder.freeze=true",
             "encoder.finetune_after=1", "encoder.lr=0.01", "trainer.max_epochs=2"]


def weights(run) -> dict[str, torch.Tensor]:
    sd = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}


def test_frozen_then_the_last_block_trains_and_resume_does_the_same(tmp_path, monkeypatch):
    calls = []
    real = feature_cache.encode_store
    monkeypatch.setattr(feature_cache, "encode_store", lambda enc, store, *a, **kw: calls.append(len(store)) or real(enc, store, *a, **kw))
    train(compose(*OVERRIDES, f"paths.cache_dir={tmp_path / 'cache'}"), run_dir=tmp_path / "a", name="a")
    assert len(calls) == 3  # epoch 0 trained on cached features (train, val, test encoded once)
    one = {k: v for k, v in weights(tmp_path / "a").items()}
    # resume: stop after the frozen epoch, then continue into the fine-tuning one
    train(compose(*OVERRIDES, "trainer.max_epochs=1", f"paths.cache_dir={tmp_path / 'cache'}"), run_dir=tmp_path / "b", name="b")
    frozen = weights(tmp_path / "b")
    code, _, err = run_module("zoo", [f"resume={tmp_path / 'b'}", "trainer.max_epochs=2"])
    assert code == 0, err
    resumed = weights(tmp_path / "b")
    changed = {k for k in one if not torch.equal(one[k], frozen[k])}
    assert changed and all(k.startswith("trunk.7.") for k in changed), sorted(changed)[:5]  # layer4 only
    assert not any("running_" in k for k in changed)  # batch-norm statistics stay the pretrained ones
    gaps = {k: (resumed[k].float() - one[k].float()).abs().max().item() for k in one}
    print({k: v for k, v in gaps.items() if v > 0})
    assert max(gaps.values()) < 1e-5  # and the resumed run trains what the uninterrupted one did


def test_fine_tuning_options_are_checked():
    with pytest.raises(ConfigError, match="needs encoder.freeze=true"):
        ResNetEncoder(pretrained=False, finetune_after=1)
    with pytest.raises(ConfigError, match="finetune_blocks must be 1..5"):
        ResNetEncoder(pretrained=False, freeze=True, finetune_after=1, finetune_blocks=9)
    with pytest.raises(ConfigError, match="set encoder.finetune_after"):
        ResNetEncoder(pretrained=False, lr=0.1)
    enc = ResNetEncoder(pretrained=False, freeze=True, finetune_after=0, finetune_blocks=2)
    assert {id(p) for p in enc.finetune_parameters()} == {id(p) for m in (enc.trunk[6], enc.trunk[7]) for p in m.parameters()}
