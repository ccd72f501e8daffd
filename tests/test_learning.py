"""A small captioner learns to read the image: it beats the blind ablation by a wide margin."""
from __future__ import annotations

import pytest

import json

from conftest import compose

from zoo.run.train import train

pytestmark = pytest.mark.slow  # trainings that must learn: seconds to a minute each

SMALL = [
    "data=shapes", "data.train_images=900", "data.val_images=100", "data.test_images=100",
    "encoder.channels=[16,32,64]", "encoder.fc=[64]", "cell.hidden_size=96", "head.embed_dim=48",
    "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
]


def test_captioner_beats_the_blind_model(tmp_path):
    results = {}
    for blind in (False, True):
        cfg = compose("task=captioning", *SMALL, f"data.blind={str(blind).lower()}")
        train(cfg, run_dir=tmp_path / f"blind={blind}", name="learning")
        results[blind] = json.loads((tmp_path / f"blind={blind}" / "metrics.json").read_text())
    seeing, blind = results[False], results[True]
    print({k: (round(seeing[k], 3), round(blind[k], 3)) for k in ("test/bleu4", "test/cider", "test/loss")})
    assert seeing["test/bleu4"] > 0.5
    assert seeing["test/bleu4"] > blind["test/bleu4"] + 0.25
    assert seeing["test/cider"] > 2 * blind["test/cider"]
    assert seeing["test/loss"] < blind["test/loss"] - 0.2


def test_show_and_tell_reads_the_image_through_the_normalised_first_input(tmp_path):
    """head.condition=first_input (Show and Tell), CNN from scratch: with the image projected to
    the word embeddings' scale (head.image_norm, the default) it learns from the image; without,
    it settles near the blind model (measured with SMALL here: BLEU-4 0.27 vs 0.12, the blind
    model's; test loss 0.99 vs 1.12; on CI's machine BLEU-4 0.29 vs 0.23, CIDEr-D 1.03 vs 0.76,
    loss 0.95 vs 1.06: the loss is the steadier witness)."""
    results = {}
    for norm in (True, False):
        cfg = compose("task=captioning", *SMALL, "head.condition=first_input", f"head.image_norm={str(norm).lower()}")
        train(cfg, run_dir=tmp_path / f"norm={norm}", name="learning")
        results[norm] = json.loads((tmp_path / f"norm={norm}" / "metrics.json").read_text())
    normed, plain = results[True], results[False]
    print({k: (round(normed[k], 3), round(plain[k], 3)) for k in ("test/bleu4", "test/cider", "test/loss")})
    # each witness alone has failed on some machine (one thread on an Intel Xeon: BLEU-4 and
    # CIDEr-D well apart, loss 1.016 vs 1.021); a model that ignores the image loses on at least two
    witnesses = [normed["test/bleu4"] > plain["test/bleu4"] + 0.03, normed["test/cider"] > plain["test/cider"] + 0.15,
                 normed["test/loss"] < plain["test/loss"] - 0.06]
    assert sum(witnesses) >= 2, (normed, plain)
