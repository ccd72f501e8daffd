"""Every task x every cell runs (fast dev run) and writes its metrics; impossible task
combinations fail at composition; each task's batches keep examples independent of padding."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, check_metrics, compose
from hydra.utils import instantiate

from zoo.run.checks import check
from zoo.run.configs import group_options
from zoo.errors import ConfigError
from zoo.run.train import build_task, train

TASKS = group_options("task")
EXPECTED = {
    "captioning": {"test/bleu4", "test/cider"},
    "sentiment": {"test/acc", "test/f1", "test/loss"},
    "seqimage": {"test/acc", "test/f1", "test/loss"},
    "tagging": {"test/acc", "test/f1", "test/loss"},
    "video": {"test/acc", "test/f1", "test/loss"},
    "charlm": {"test/loss", "test/bpc", "test/ppl"},
    "translation": {"test/bleu", "test/chrf", "test/loss"},
    "imageclass": {"test/acc", "test/f1", "test/loss"},
    "glimpse": {"test/acc", "test/f1", "test/loss"},
    "draw": {"test/nll", "test/recon", "test/kl", "test/bits_per_pixel"},
}


def test_every_task_is_covered():
    assert set(TASKS) == set(EXPECTED) == set(TINY)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("cell", group_options("cell"))
def test_fast_dev_run_every_task_and_cell(tmp_path, task, cell):
    from hydra.utils import get_object

    if "cell" not in get_object(compose(f"task={task}").task._target_).parts:  # no recurrence: once, with no cell
        if cell != group_options("cell")[0]:
            pytest.skip(f"task={task} has no cell")
        cell_choice = []
    else:
        cell_choice = [f"cell={cell}"]
    cfg, choices = compose(f"task={task}", *cell_choice, "trainer.fast_dev_run=true", *TINY[task], choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path, name="fdr")
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()), EXPECTED[task])
    assert json.loads((tmp_path / "data_spec.json").read_text())  # vocabularies / labels saved with the run


def head_cases() -> list[tuple[str, str, str | None]]:
    """(task, head, head option) for every head config a task's mode and data take, with each of
    the head's variants (condition, attention, pool): a new head or variant is run here."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir

    cases = []
    for task in TASKS:
        cfg = compose(f"task={task}")
        modes, label_mode = get_object(cfg.task._target_).modes, getattr(get_object(cfg.data._target_), "label_mode", None)
        if "head" not in get_object(cfg.task._target_).parts:
            continue
        for head in group_options("head"):
            cls = get_object(OmegaConf.load(config_dir() / "head" / f"{head}.yaml")._target_)
            if cls.mode not in modes or (label_mode and cls.mode != label_mode):
                continue
            key, values = next(((k, getattr(cls, k + "s")) for k in ("condition", "attention", "pool")
                                if hasattr(cls, k + "s")), (None, [None]))
            cases += [(task, head, f"head.{key}={v}" if key else None) for v in values]
    return cases


@pytest.mark.parametrize("task,head,option", head_cases())
def test_every_head_and_variant_runs_in_every_task_it_fits(tmp_path, task, head, option):
    extra = ["encoder=cnn", "encoder.channels=[8,16]"] if option == "head.condition=attention" else []
    cfg, choices = compose(f"task={task}", f"head={head}", *([option] if option else []), "trainer.fast_dev_run=true",
                           *TINY[task], *extra, choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path, name="head")
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()), EXPECTED[task])


def test_the_head_registry_covers_every_mode_and_variant():
    cases = head_cases()
    assert {("captioning", f"head.condition={c}") for c in ("init", "every_step", "first_input", "attention")} <= {
        (t, o) for t, _, o in cases}
    assert {o for t, _, o in cases if t == "translation"} == {f"head.attention={a}" for a in ("none", "additive", "multiplicative")}
    assert {h for t, h, _ in cases if t in ("tagging", "video", "charlm")} == {"synced"}
    assert {o for t, _, o in cases if t == "sentiment"} == {f"head.pool={p}" for p in ("last", "mean", "max")}


@pytest.mark.parametrize("overrides,message", [
    (["task=sentiment", "encoder=cnn"], "needs an encoder from tokens to a sequence"),
    (["task=seqimage", "encoder=embedding"], "needs an encoder from image to a sequence"),
    (["task=captioning", "data=reviews"], "cannot read data=reviews"),
    (["task=tagging", "head=many_to_one"], "has a label per step, but head=many_to_one is many_to_one"),
    (["task=sentiment", "head=synced"], "has a label per sequence, but head=synced is synced. Choose head= one of: many_to_one"),
    (["task=tagging", "head=one_to_many"], "needs a many_to_one or synced head"),
    (["task=translation", "cell.bidirectional=true"], "task.bidirectional_encoder=true"),
    (["task=sentiment", "head.pool=median"], "head.pool=median is not one of: last, mean, max"),
    (["task=translation", "head.attention=dot"], "head.attention=dot is not one of"),
])
def test_impossible_combinations_fail_at_composition(overrides, message):
    cfg, choices = compose(*overrides, choices=True)
    with pytest.raises(ConfigError, match=message):
        check(cfg, choices)


def _model_and_batch(task: str, *overrides: str):
    cfg = compose(f"task={task}", *TINY[task], *overrides)
    dm = instantiate(cfg.data)
    dm.setup()
    torch.manual_seed(0)
    model = build_task(cfg, dm.spec).eval()
    return model, dm


def _two(dm, collate_items):
    items = sorted(dm.data["val"], key=dm.length)
    return items[0], items[-1]


@pytest.mark.parametrize("task", ["sentiment", "tagging"])
def test_an_example_alone_or_padded_in_a_batch_gives_the_same_output(task):
    model, dm = _model_and_batch(task, "cell.num_layers=2")
    short, long = _two(dm, dm.collate)
    assert dm.length(short) < dm.length(long)
    alone = model(dm.collate([short]))
    together = model(dm.collate([long, short]))
    if task == "tagging":
        n = dm.length(short)
        torch.testing.assert_close(together[1, :n], alone[0, :n])
    else:
        torch.testing.assert_close(together[1], alone[0])


def test_translation_alone_or_padded_gives_the_same_scores_and_output():
    model, dm = _model_and_batch("translation")
    short, long = _two(dm, dm.collate)
    b1, b2 = dm.collate([short]), dm.collate([long, short])
    for b, i in ((b1, 0), (b2, 1)):
        memory, mask, summary = model.encode_source(b["src"], b["src_lengths"])
        b["logits"] = model.decoder(memory, mask, summary, b["tgt"][:, :-1])[i]
    n = len(short[1]) - 1
    torch.testing.assert_close(b2["logits"][:n], b1["logits"][:n])
    assert model.translate(b1)[0] == model.translate(b2)[1]


def test_video_clips_of_different_lengths_are_padded_safely():
    model, dm = _model_and_batch("video")
    frames, labels = dm.data["val"][0]
    short = (frames[:5], labels[:5])
    alone = model(dm.collate([short]))
    together = model(dm.collate([dm.data["val"][1], short]))
    torch.testing.assert_close(together[1, :5], alone[0], rtol=1e-4, atol=1e-5)


def test_charlm_carries_a_detached_state_across_batches(tmp_path):
    model, dm = _model_and_batch("charlm")
    model.train()
    batches = list(dm.train_dataloader())[:3]
    assert [b["window"] for b in batches] == [0, 1, 2]
    model._stream_step("train", batches[0])
    window, carried = model._state["train"]
    assert window == 0 and all(not t.requires_grad for s in carried for t in (s if isinstance(s, tuple) else (s,)))
    # the next window starts from the carried state; a window that does not follow it starts from zeros
    loss_carried = model._stream_step("train", batches[1])
    model._state.clear()
    fresh = model._stream_step("train", batches[1])
    assert not torch.isclose(loss_carried, fresh)
    B = batches[2]["tokens"].shape[0]
    model._state["train"] = (7, carried)  # the state after another window: not carried into window 2
    assert model._carried("train", 2, B) is None and model._carried("train", 8, B) is not None
    model.eval()
    with torch.no_grad():
        x = torch.cat([batches[0]["tokens"][:, :-1], batches[1]["tokens"]], 1)
        out = model.recurrence(model.encoder(x[:, :-1])).outputs
        both = torch.nn.functional.cross_entropy(model.head(out)[:, -20:].flatten(0, 1), x[:, -20:].flatten())
        model._stream_step("val", batches[0])
        second = model._stream_step("val", batches[1])
    torch.testing.assert_close(second, both, rtol=1e-4, atol=1e-5)


def test_charlm_writes_generated_text(tmp_path):
    cfg = compose("task=charlm", *TINY["charlm"], "trainer.max_epochs=1", "task.sample.prime=Mia",
                  "task.sample.length=50")
    train(cfg, run_dir=tmp_path, name="lm")
    text = (tmp_path / "samples.txt").read_text().splitlines()
    assert text[0] == "# prime='Mia' temperature=0.8"
    body = "\n".join(text[1:])
    assert body.startswith("Mia") and len(body) >= 53


def test_a_captioner_never_writes_unk_unless_asked_to():
    """task.decode.suppress_unk (default true): <UNK> is ranked in training and never generated;
    here the output layer is made to prefer it above every word."""
    model, dm = _model_and_batch("captioning")
    unk = model.vocab.unk_id
    with torch.no_grad():
        model.decoder.W_hy.bias[unk] = 50.0
    images = torch.rand(4, *dm.spec.image_shape)
    for strategy in ("greedy", "beam", "sample"):
        assert unk not in model(images, strategy=strategy).tokens.flatten().tolist(), strategy
    free, _ = _model_and_batch("captioning", "task.decode.suppress_unk=false")
    with torch.no_grad():
        free.decoder.W_hy.bias[unk] = 50.0
    assert unk in free(images, strategy="greedy").tokens.flatten().tolist()
