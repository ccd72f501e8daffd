"""benchmarks.parity: its plain models are the zoo's architectures, and the command trains both
sides for the same steps and prints both sides' metrics (last line JSON)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED_DATA, TINY, compose, run_module

from benchmarks.parity import PLAIN, copy_zoo_weights

TASKS = ("charlm", "tagging", "sentiment", "translation")
# more than the tiny defaults: stacked layers, the head's hidden layer, a forget-gate bias
WIDER = {"charlm": ["cell.num_layers=2", "cell.forget_bias=1.0"], "tagging": ["cell.num_layers=2"],
         "sentiment": ["head.hidden=8"], "translation": []}


def _outputs(task: str, zoo, plain, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if task == "charlm":
        tokens = batch["tokens"][:, :-1]
        return zoo.head(zoo.recurrence(zoo.encoder(tokens)).outputs), plain(tokens)[0]
    if task == "translation":
        src, lengths, tgt = batch["src"], batch["src_lengths"], batch["tgt"][:, :-1]
        return zoo.decoder(*zoo.encode_source(src, lengths), tgt), plain(src, lengths, tgt)
    return zoo(batch), plain(batch["tokens"], batch["lengths"])


@pytest.mark.parametrize("task", TASKS)
def test_the_plain_model_is_the_zoo_models_function(task):
    """Given the zoo model's weights, the hand-written model computes the same outputs (and,
    translating, the same greedy words): the two sides of the benchmark are one architecture."""
    from hydra.utils import instantiate

    from zoo.run.train import build_task

    cfg = compose(f"task={task}", *TINY[task], *WIDER[task])
    data = instantiate(cfg.data)
    data.setup("fit")
    torch.manual_seed(0)
    zoo = build_task(cfg, data.spec).eval()
    plain = PLAIN[task](cfg, data.spec).model.eval()
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        before = _outputs(task, zoo, plain, batch)
        copy_zoo_weights(plain, zoo)
        ours, theirs = _outputs(task, zoo, plain, batch)
    assert ours.shape == theirs.shape
    assert not torch.allclose(*before, atol=1e-3)  # apart before the copy: the check can fail
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    if task == "translation":
        v = data.spec.vocab
        words = zoo(batch["src"], batch["src_lengths"], strategy="greedy").tokens
        mine = plain.greedy(batch["src"], batch["src_lengths"], max_len=zoo.max_len, min_length=1,
                            start=v.start_id, end=v.end_id, pad=v.pad_id)
        assert torch.equal(words, mine[:, :words.shape[1]]) and (mine[:, words.shape[1]:] == v.pad_id).all()


# the recipes on the real data, small (the recipes' models take seconds a step), dropouts off
SMALL = {
    "charlm": ["cell.hidden_size=16", "encoder.dim=8", "data.bptt=20", "cell.dropout=0", "head.dropout=0"],
    "tagging": ["cell.hidden_size=16", "encoder.dim=8", "encoder.dropout=0", "encoder.word_dropout=0",
                "cell.dropout=0", "head.dropout=0"],
    "sentiment": ["cell.hidden_size=16", "encoder.dim=8", "encoder.dropout=0", "encoder.word_dropout=0",
                  "head.dropout=0"],
    "translation": ["cell.hidden_size=16", "encoder.dim=8", "head.embed_dim=8", "head.attention_dim=8",
                    "encoder.dropout=0", "head.dropout=0", "data.batch_size=8", "data.eval_batch_size=8"],
}
DATA = {"charlm": "tinyshakespeare/input.txt", "tagging": "ud-english-ewt/en_ewt-ud-train.conllu",
        "sentiment": "sst2/stsa.binary.train", "translation": "multi30k/train.en.gz"}
METRICS = {"charlm": ["test/loss"], "tagging": ["test/acc", "test/loss"], "sentiment": ["test/acc", "test/loss"],
           "translation": ["test/bleu", "test/bleu_lc", "test/loss"]}


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_parity_trains_both_sides_for_the_same_steps(task):
    """Three steps of each side from the same initial weights, no dropout: the zoo's training
    path and the plain loop take the same steps (the same training losses) and their test
    metrics agree; the JSON has both sides' metrics, their step counts and the step-time ratio."""
    if not (SHARED_DATA / DATA[task]).is_file():
        pytest.skip(f"{SHARED_DATA / DATA[task]} is not here")
    code, out, err = run_module("benchmarks.parity", [
        task, "--steps", "3", "--same-init", "--threads", "1", "--data-root", str(SHARED_DATA),
        *SMALL[task], "trainer.limit_test_batches=2"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["zoo/steps"] == result["plain/steps"] == 3
    assert result["step_time_ratio"] > 0 and result["zoo/step_ms"] > 0 and result["plain/step_ms"] > 0
    assert result["train_loss_gap_max"] < 1e-3, result
    for metric in METRICS[task]:
        zoo, plain = result[f"zoo/{metric}"], result[f"plain/{metric}"]
        assert abs(zoo - plain) <= 1e-3 * max(1.0, abs(zoo)), (metric, zoo, plain)
    assert result["zoo/test/loss"] < 20  # a loss, not a placeholder


@pytest.mark.slow
def test_parity_seeds_give_mean_and_spread():
    """--seeds 2, torch's own initialisation on the plain side: mean and std of each side."""
    if not (SHARED_DATA / DATA["charlm"]).is_file():
        pytest.skip(f"{SHARED_DATA / DATA['charlm']} is not here")
    code, out, err = run_module("benchmarks.parity", [
        "charlm", "--steps", "2", "--seeds", "2", "--threads", "1", "--data-root", str(SHARED_DATA),
        *SMALL["charlm"], "trainer.limit_test_batches=1"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["seeds"] == 2 and result["zoo/steps"] == result["plain/steps"] == 2
    assert result["zoo/test/loss_std"] > 0 and result["plain/test/loss_std"] > 0  # two seeds, two models
    assert "train_loss_gap_max" not in result
    assert "zoo/test/loss" in result and "plain/test/loss" in result
    # the step-time ratio is the geometric mean of the seeds' pairs (run in alternating order)
    pairs = result["step_time_ratio_pairs"]
    assert len(pairs) == 2 and all(r > 0 for r in pairs)
    assert result["step_time_ratio"] == pytest.approx((pairs[0] * pairs[1]) ** 0.5, rel=1e-3)
    assert "zoo first" in out and "plain first" in out
