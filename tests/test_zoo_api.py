"""The zoo as a user meets it: recipes, the listing, build/load, predict, evaluate, export."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import QUIET, ROOT, SHARED_DATA, TINY, check_metrics, compose, run_module
from PIL import Image

import zoo
from zoo.run.checks import check
from zoo.run.configs import group_options
from zoo.errors import ZooError
from zoo.run.train import train

# what each recipe needs besides its own settings to run in a test: data paths, small sizes
RECIPE_DATA = {
    "char_rnn": [f"data.path={SHARED_DATA}/tinyshakespeare/input.txt", "cell.hidden_size=16",
                 "data.batch_size=4", "data.bptt=20"],
    "seq2seq_attention": [f"data.root={SHARED_DATA}/multi30k", "cell.hidden_size=16", "encoder.dim=8",
                          "head.embed_dim=8", "head.attention_dim=8", "data.batch_size=8", "data.eval_batch_size=8"],
    "sentiment_bilstm": [f"data.root={SHARED_DATA}/sst2", "cell.hidden_size=16", "encoder.dim=8"],
    "tagger_bilstm": [f"data.root={SHARED_DATA}/ud-english-ewt", "cell.hidden_size=16", "encoder.dim=8"],
    "pretrained_captioner": ["data=karpathy", f"data.json_path={SHARED_DATA}/emoji/dataset_emoji.json",
                             f"data.image_dir={SHARED_DATA}/emoji/images", "data.max_images=12", "data.min_count=1",
                             "cell.hidden_size=16", "head.embed_dim=8"],
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", group_options("recipe"))
def test_every_recipe_composes_and_runs(tmp_path, recipe):
    if recipe in RECIPE_DATA and not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    text = (ROOT / "recipes" / f"{recipe}.yaml").read_text()
    assert "Expected" in text and "# @package _global_" in text  # states its data and its result
    cfg, choices = compose(f"recipe={recipe}", "trainer.fast_dev_run=true", *RECIPE_DATA.get(recipe, []), *QUIET,
                           choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path, name=recipe)
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()), {cfg.monitor.metric})
    if recipe == "show_attend_tell":
        maps = list((tmp_path / "attention").glob("*.png"))
        assert maps and Image.open(maps[0]).width > 96  # a panel per generated word


def test_listing_shows_every_config_and_the_heads_of_each_task():
    code, out, _ = run_module("zoo.list", [])
    assert code == 0
    for group in ("task", "encoder", "cell", "head", "recipe", "data"):
        for name in group_options(group):
            assert f"  {name} " in out, (group, name)
    assert "heads: seq2seq; defaults: encoder=embedding, cell=gru" in out


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    run = tmp_path_factory.mktemp("captioner")
    train(compose("task=captioning", *TINY["captioning"], "trainer.max_epochs=2"), run_dir=run, name="cap")
    return run


def test_build_an_untrained_model_from_names():
    model = zoo.build(task="captioning", cell="gru", overrides=["cell.hidden_size=24", *TINY["captioning"][:3]])
    assert type(model.decoder.recurrence.cells[0]).__name__ == "GRUCell" and model.decoder.recurrence.hidden_size == 24
    assert model.spec.vocab is not None and model.decoder.W_hy.out_features == len(model.spec.vocab)  # sized by the data
    assert model.run_config["cell"]["hidden_size"] == 24  # and it carries the config a checkpoint would


def test_load_needs_no_config_or_data_and_predicts_like_the_trained_model(captioner, tmp_path):
    model = zoo.load(captioner)
    assert not model.training and model.spec.vocab.itos[:4] == ["<PAD>", "<START>", "<END>", "<UNK>"]
    same = zoo.load(captioner / "checkpoints" / "best.ckpt")
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(model(images).tokens, same(images).tokens)


def test_damaged_checkpoints_give_a_clear_error(captioner, tmp_path):
    good = (captioner / "checkpoints" / "best.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    (tmp_path / "tampered.ckpt").write_bytes(good[:1000] + bytes(b ^ 0xFF for b in good[1000:1100]) + good[1100:])
    for name in ("truncated.ckpt", "tampered.ckpt"):
        with pytest.raises(ZooError, match="not a readable checkpoint"):
            zoo.load(tmp_path / name)

    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    torch.save({"zoo": {}, "state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(ZooError, match="not a readable checkpoint"):  # weights-only: code is never run
        zoo.load(tmp_path / "evil.ckpt")
    with pytest.raises(ZooError, match="no such checkpoint"):
        zoo.load(tmp_path / "missing")


@pytest.mark.slow
def test_predict_in_a_fresh_process_gives_the_captions_of_training(captioner, tmp_path):
    from hydra.utils import instantiate

    expected = json.loads((captioner / "test_captions.json").read_text())
    cfg = compose("task=captioning", *TINY["captioning"])
    data = instantiate(cfg.data)
    data.setup()
    split = data.splits["test"]
    files = []
    for i in range(5):
        path = tmp_path / f"{split.names[i]}.png"
        Image.fromarray((split.display[i] * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        files.append(path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    r = subprocess.run([sys.executable, "-m", "zoo.predict", str(captioner), *map(str, files),
                        str(tmp_path / "broken.png"), "--json"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1  # one input failed, the others were captioned
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert "error" in results[-1] and "cannot decode image" in results[-1]["error"]
    for path, result in zip(files, results):
        assert result["caption"] == expected[path.stem]


@pytest.mark.slow
def test_predict_text_tasks(tmp_path):
    for task, raw, key in (("sentiment", "the film was not good .", "label"), ("tagging", "the dog sees a cat .", "tags"),
                           ("translation", "the dog sees a cat .", "translation"), ("charlm", "Mia", "text")):
        run = tmp_path / task
        train(compose(f"task={task}", *TINY[task], "trainer.max_epochs=1"), run_dir=run, name=task)
        out = zoo.load(run).predict_inputs([raw, ""] if task != "charlm" else [raw])
        assert key in out[0], out
        if task != "charlm":
            assert "error" in out[1] and "empty" in out[1]["error"]


@pytest.mark.slow
def test_evaluate_recomputes_the_metrics(tmp_path):
    run = tmp_path / "s"
    train(compose("task=sentiment", *TINY["sentiment"], "trainer.max_epochs=2"), run_dir=run, name="s")
    code, _, err = run_module("zoo.evaluate", [str(run), "split=val"])
    assert code == 0, err[-2000:]
    got = json.loads((run / "eval-val.json").read_text())
    want = json.loads((run / "metrics.json").read_text())
    assert abs(got["val/acc"] - want["val/acc"]) < 1e-6 and abs(got["val/loss"] - want["val/loss"]) < 1e-5
    code, out, _ = run_module("zoo.evaluate", [str(run), "data.test_size=40", "data.data_seed=3"])
    assert code == 0 and "test/acc" in json.loads(out.splitlines()[-1])


EXPORT_CASES = [
    ("captioning", ["head.condition=every_step"]), ("captioning", ["head.condition=attention", "cell=gru"]),
    ("captioning", ["head.condition=first_input"]), ("translation", []),
    # a cell without a torch kernel: torch.export records the source encoder's loop as one scan,
    # TorchScript traces it over padded sources
    ("translation", ["cell=mingru"]), ("captioning", ["cell=mingru", "head.condition=every_step"]),
    # subword targets: the text is the pieces joined by the data's tokenizer, not by spaces
    ("translation", ["data.tokenizer=bpe", "data.vocab_size=120"]),
]


@pytest.fixture(scope="module", params=EXPORT_CASES, ids=lambda case: " ".join([case[0], *case[1]]))
def exportable(request, tmp_path_factory):
    """A tiny trained model per case, shared by the formats."""
    task, overrides = request.param
    run = tmp_path_factory.mktemp("exportable")
    short = ["data.max_len=16"] if task == "translation" else []  # an untrained decoder writes max_len tokens
    train(compose(f"task={task}", *TINY[task], *short, *overrides, "trainer.max_epochs=1"), run_dir=run, name="x")
    return zoo.load(run)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torch_export", "onnx", "torchscript"])
def test_exported_model_decodes_like_the_eager_one(exportable, fmt, tmp_path, monkeypatch):
    """Each format, read by the reference runner, gives the eager model's ids, scores and text (the
    caption predict gives; the translation detokenised) for greedy and beam, for any batch size;
    torch_export and onnx take sources of any length (a traced step loop refuses the longer ones)."""
    from zoo.export import FORMATS, PARTS, ExportedDecoder, export

    model = exportable
    folder = export(model, tmp_path / "export", fmt)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["export.json", *(f"{p}.{FORMATS[fmt]}" for p in PARTS)])
    runner = ExportedDecoder(folder)
    torch.manual_seed(0)
    if type(model).__name__ == "CaptioningTask":
        inputs = (torch.rand(5, 3, 32, 32),)
        text = lambda ids: " ".join(model.vocab.decode(ids))  # as predict gives it
    else:  # longer than the example export records with (7)
        inputs = (torch.randint(4, len(model.spec.src_vocab), (5, 9)), torch.tensor([9, 3, 5, 2, 9]))
        text = model.detokenize
    for decode in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 3}):
        want, got = model(*inputs, **decode), runner.decode(*inputs, **decode)
        assert torch.equal(got.tokens, want.tokens), decode
        assert torch.allclose(got.scores, want.scores, atol=1e-4), (got.scores, want.scores)
        assert [runner.words(row) for row in got.tokens.tolist()] == [text(row) for row in want.tokens.tolist()]
    if type(model).__name__ == "CaptioningTask":
        assert runner.run(inputs[0][:1], strategy="greedy") == [text(model(inputs[0][:1], strategy="greedy").tokens[0])]
    else:  # one sentence, as predict translates it (its decoding: the model's beam)
        sentence = "the dog sees a cat ."
        ids = model.spec.src_vocab.encode(model.tokenizers()[0].split(sentence))
        assert runner.run(torch.tensor([ids]), torch.tensor([len(ids)])) == [model.predict_inputs([sentence])[0]["translation"]]
        if model.spec.tokenizer.trained:  # subwords: joining them by spaces would not be the text
            assert any(" ".join(model.spec.vocab.decode(row)) != runner.words(row) for row in got.tokens.tolist())
        longest = model.max_len + 5
        src = torch.randint(4, len(model.spec.src_vocab), (2, longest))
        if fmt == "torchscript" and runner.meta["max_source_len"]:  # a traced step loop: a clear error
            with pytest.raises(ZooError, match=f"sources of up to {model.max_len} tokens"):
                runner.run(src, torch.tensor([longest, 4]))
        else:
            assert runner.decode(src, torch.tensor([longest, 4]), strategy="greedy").tokens.equal(
                model(src, torch.tensor([longest, 4]), strategy="greedy").tokens)
    if fmt == "onnx":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if zoo[onnx] were not installed
        with pytest.raises(ZooError, match=r"pip install 'zoo\[onnx\]'"):
            ExportedDecoder(folder)


def test_export_refuses_what_it_cannot_do_in_one_line(tmp_path, monkeypatch):
    """An unknown format, the ONNX packages missing, a task that does not generate: exit code 2
    and one line that says what to do."""
    code, _, err = run_module("zoo.export", [str(tmp_path), "--format", "tflite"])
    assert code == 2 and err.strip() == "error: --format tflite: choose one of torch_export, onnx, torchscript"
    model = zoo.build(task="sentiment", overrides=TINY["sentiment"])
    torch.save({"zoo": {"spec": model.spec.to_dict(), "config": model.run_config}, "state_dict": model.state_dict()},
               tmp_path / "sentiment.ckpt")
    code, _, err = run_module("zoo.export", [str(tmp_path / "sentiment.ckpt")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not LabelTask" in err, err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if zoo[onnx] were not installed
    code, _, err = run_module("zoo.export", [str(tmp_path / "sentiment.ckpt"), "--format", "onnx"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install 'zoo[onnx]'" in err, err
    assert not (tmp_path / "export").exists()


def test_every_recipe_states_a_result_that_a_benchmark_checks():
    """Each recipe's '# Expected: <metric> >=|<= <value>' line names a metric its task reports,
    and python -m benchmarks.quality trains that recipe and checks the claim."""
    from benchmarks.quality import BENCHMARKS, expected, meets

    benched = {b["recipe"] for b in BENCHMARKS.values()}
    for recipe in group_options("recipe"):
        metric, op, value = expected(recipe)
        cfg = compose(f"recipe={recipe}", *RECIPE_DATA.get(recipe, []))
        assert metric.startswith("test/") and metric.split("/")[1] in EXPECTED_METRICS[cfg.task._target_], (recipe, metric)
        assert recipe in benched, f"recipes/{recipe}.yaml: no benchmark checks its Expected line"
    assert meets(0.81, ">=", 0.8) and not meets(0.79, ">=", 0.8) and meets(1.4, "<=", 1.5)


# what each task's runs report (per split), for the recipes' claims
EXPECTED_METRICS = {
    "zoo.tasks.captioning.CaptioningTask": {"bleu1", "bleu2", "bleu3", "bleu4", "cider", "loss", "ppl"},
    "zoo.tasks.charlm.CharLMTask": {"loss", "bpc", "ppl"},
    "zoo.tasks.labels.LabelTask": {"acc", "f1", "loss"},
    "zoo.tasks.translation.TranslationTask": {"bleu", "chrf", "loss"},
    "zoo.tasks.glimpse.GlimpseTask": {"acc", "f1", "loss"},
    "zoo.tasks.draw.DRAWTask": {"nll", "recon", "kl", "bits_per_pixel"},
}


@pytest.mark.slow
def test_evaluate_and_export_of_a_bare_checkpoint_write_beside_it(captioner, tmp_path):
    """A checkpoint file outside a run folder: the results go next to it, not into its parent's parent."""
    import shutil

    models = tmp_path / "shared" / "models"
    models.mkdir(parents=True)
    shutil.copy(captioner / "checkpoints" / "best.ckpt", models / "captioner.ckpt")
    assert run_module("zoo.evaluate", [str(models / "captioner.ckpt"), "split=val"])[0] == 0
    assert run_module("zoo.export", [str(models / "captioner.ckpt")])[0] == 0
    assert (models / "eval-val.json").is_file() and (models / "export" / "step.pt2").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"] and sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["models"]
    # a checkpoint inside a run folder's checkpoints/: the run folder, as before
    assert run_module("zoo.evaluate", [str(captioner / "checkpoints" / "last.ckpt"), "split=val"])[0] == 0
    assert (captioner / "eval-val.json").is_file()
