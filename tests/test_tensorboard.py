"""logger=tensorboard: what TensorBoard would show is in the run's event files, read back the
way TensorBoard reads them (its EventAccumulator and its text plugin's Markdown), no server."""
from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY, compose, run_module

from zoo.run.train import train

CAPTIONING = ["task=captioning", *TINY["captioning"], "logger=tensorboard", "trainer.max_epochs=2",
              "trainer.log_every_n_steps=1"]


def events(folder: Path):
    """Everything in ``folder/tensorboard`` (size guidance 0: every point, image and text kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    kinds = ("scalars", "images", "tensors", "histograms", "audio", "compressedHistograms")
    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={k: 0 for k in kinds})
    acc.Reload()
    return acc


def text_of(acc, name: str) -> str:
    """The Markdown source of the text ``name`` (SummaryWriter.add_text stores it under name/text_summary)."""
    from tensorboard.util import tensor_util

    (event,) = acc.Tensors(f"{name}/text_summary")
    return tensor_util.make_ndarray(event.tensor_proto).item().decode()


def as_html(markdown: str) -> str:
    """How TensorBoard's text tab shows it."""
    from tensorboard.plugins.text.text_plugin import text_array_to_html

    return text_array_to_html(np.array(markdown.encode()), enable_markdown=True)


def table_rows(markdown: str) -> list[list[str]]:
    """A Markdown table's body cells, unescaped back to the text they show."""
    cell = lambda s: html.unescape(re.sub(r"\\(.)", r"\1", s.strip()))
    return [[cell(c) for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in markdown.splitlines()[2:]]


def csv_metrics(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv as {column: [(step, value), ...]} in the order written."""
    out: dict[str, list] = {}
    with open(folder / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    out.setdefault(key, []).append((int(row["step"]), float(value)))
    return out


@pytest.fixture(scope="module")
def captioning_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tb") / "captioning"
    train(compose(*CAPTIONING), run_dir=run_dir, name="captioning-tb")
    return run_dir


def test_the_scalars_are_the_csv_metrics_with_the_same_final_values(captioning_run):
    acc, logged = events(captioning_run), csv_metrics(captioning_run)
    scalars = set(acc.Tags()["scalars"])
    assert scalars == set(logged), (scalars ^ set(logged))
    assert {"train/loss", "val/cider", "test/bleu4", "test/cider", "grad_norm/total"} <= scalars
    assert any(tag.startswith("lr-") for tag in scalars)
    for tag, points in logged.items():
        shown = acc.Scalars(tag)
        assert [e.step for e in shown] == [s for s, _ in points], tag
        assert shown[-1].value == pytest.approx(points[-1][1], rel=1e-6, abs=1e-7), tag
    final = json.loads((captioning_run / "metrics.json").read_text())
    assert acc.Scalars("test/bleu4")[-1].value == pytest.approx(final["test/bleu4"], rel=1e-6, abs=1e-7)
    assert acc.Scalars("val/cider")[-1].value == pytest.approx(final["val/cider"], rel=1e-6, abs=1e-7)
    assert len(acc.Scalars("train/loss")) >= 8  # a curve, not a point


def test_each_sample_image_is_its_test_image_at_its_size(captioning_run):
    from hydra.utils import instantiate
    from PIL import Image
    import io

    acc = events(captioning_run)
    tags = acc.Tags()["images"]
    assert tags == [f"test/samples/{r:02d}" for r in range(16)]
    cfg = compose(*CAPTIONING)
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup("fit")
    test = data.splits["test"]
    last_step = acc.Scalars("test/bleu4")[-1].step  # where the run's final metrics are
    for r, tag in enumerate(tags):
        (image,) = acc.Images(tag)
        assert (image.width, image.height) == (cfg.data.image_size, cfg.data.image_size) and image.step == last_step
        pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        expected = (test.display[r].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        assert np.array_equal(pixels, expected), tag


def test_the_text_samples_are_the_generated_captions_beside_their_references(captioning_run):
    acc = events(captioning_run)
    rows = table_rows(text_of(acc, "test/samples"))
    captions = list(json.loads((captioning_run / "test_captions.json").read_text()).values())[:16]
    assert [r[0] for r in rows] == [f"{k:02d}" for k in range(16)]  # the image tags' row numbers
    assert [r[1] for r in rows] == captions and all(captions)
    assert all(r[2].count(" | ") == 4 for r in rows)  # five references, their separators shown as text
    page = as_html(text_of(acc, "test/samples"))
    assert page.count("<tr>") == 17  # one table: the header and 16 rows


def test_the_final_metrics_and_the_config_are_in_the_hparams_tab(captioning_run):
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    acc = events(captioning_run)
    data = lambda tag: HParamsPluginData.FromString(acc.SummaryMetadata(tag).plugin_data.content)
    metrics = {m.name.tag for m in data("_hparams_/experiment").experiment.metric_infos}
    assert metrics == set(json.loads((captioning_run / "metrics.json").read_text()))
    assert {"test/bleu4", "val/cider"} <= metrics and metrics <= set(acc.Tags()["scalars"])  # their values: those curves
    hparams = data("_hparams_/session_start_info").session_start_info.hparams
    assert hparams["cell/hidden_size"].number_value == 32 and hparams["task/_target_"].string_value.endswith("CaptioningTask")


def test_a_resumed_run_adds_its_steps_and_keeps_the_earlier_ones(captioning_run, tmp_path):
    run_dir = tmp_path / "resumed"
    shutil.copytree(captioning_run, run_dir)
    before = {p.name: p.read_bytes() for p in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    first = [e.step for e in events(run_dir).Scalars("train/loss")]
    first_test = [e.step for e in events(run_dir).Scalars("test/bleu4")]
    overrides = [f"resume={run_dir}", "trainer.max_epochs=3"]
    train(compose(*overrides), overrides=overrides)
    after = {p.name: p.read_bytes() for p in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    assert all(after[name] == data for name, data in before.items())  # earlier files untouched
    assert len(after) > len(before)
    acc = events(run_dir)
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps[:len(first)] == first and len(steps) > len(first)
    assert min(steps[len(first):]) > max(first)  # the steps continue where the run stopped
    # metrics.csv holds both parts too (a resumed run adds to it)
    assert steps == [s for s, _ in csv_metrics(run_dir)["train/loss"]]
    tests = [e.step for e in acc.Scalars("test/bleu4")]
    assert len(first_test) == 1 and len(tests) == 2 and tests[0] == first_test[0] < tests[1]
    assert [e.step for e in acc.Images("test/samples/00")] == tests  # both runs' samples, at their steps


def test_classification_logs_a_confusion_matrix_picture_and_its_counts(tmp_path):
    run_dir = tmp_path / "sentiment"
    train(compose("task=sentiment", *TINY["sentiment"], "logger=tensorboard", "trainer.max_epochs=1"),
          run_dir=run_dir, name="sentiment-tb")
    acc = events(run_dir)
    labels = json.loads((run_dir / "data_spec.json").read_text())["labels"]
    (picture,) = acc.Images("test/confusion")
    assert picture.width > 2 * 10 * len(labels) and picture.height > 2 * 10 * len(labels)
    rows = table_rows(text_of(acc, "test/confusion"))
    assert [r[0] for r in rows] == labels
    assert sum(int(c) for r in rows for c in r[1:]) == 16  # every test sentence counted once
    correct = sum(int(r[1 + k]) for k, r in enumerate(rows))
    assert correct / 16 == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["test/acc"])


def test_text_and_table_cells_show_as_written(tmp_path):
    """<UNK>, <END>, markup, Markdown and a cell's | come out as the text they are, not as HTML."""
    from PIL import Image
    from pytorch_lightning.loggers import TensorBoardLogger

    from zoo.run.loggers import log_media

    hostile = '<b>bold</b> & <UNK> <END> *star* _under_ `tick` [link](x)'
    lg = TensorBoardLogger(save_dir=str(tmp_path), name="", version="tensorboard", default_hp_metric=False)
    media = {"samples/text": {"text": hostile + "\nsecond line"},
             "t": {"table": {"columns": ["image", "text"], "rows": [[Image.new("RGB", (5, 3)), hostile + " | x"]]}}}
    log_media([lg], media, {}, step=7)
    lg.finalize("success")
    acc = events(tmp_path)
    text = as_html(text_of(acc, "samples/text"))
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;UNK&gt; &lt;END&gt; *star* _under_ `tick` [link](x)\nsecond line" in text
    cell = as_html(text_of(acc, "t"))
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;UNK&gt; &lt;END&gt; *star* _under_ `tick` [link](x) | x</td>" in cell
    assert "<b>" not in text + cell and "<em>" not in text + cell and "<a " not in cell
    assert table_rows(text_of(acc, "t")) == [["00", hostile + " | x"]]
    (image,) = acc.Images("t/00")
    assert (image.width, image.height, image.step) == (5, 3, 7)


def test_logger_tensorboard_is_listed_and_writes_only_files(tmp_path):
    code, out, _ = run_module("zoo.list", ["logger"])
    assert code == 0 and re.search(r"^  tensorboard +TensorBoard", out, re.M)
    code, out, _ = run_module("zoo", ["--help"])
    assert code == 0 and re.search(r"^logger: .*\btensorboard\b", out, re.M)
    # the command a user runs, as the README's test runs it (a fast dev run)
    code, out, err = run_module("zoo", ["task=sentiment", "logger=tensorboard", *TINY["sentiment"],
                                        "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 0, err
    assert f"run folder: {tmp_path / 'run'}" in out
    # a fast dev run logs no curves (Lightning turns the loggers off), the samples still come
    assert "test/confusion" in events(tmp_path / "run").Tags()["images"]


@pytest.mark.slow
def test_sweep_trials_and_ddp_ranks_each_write_their_own_run_folder_once(tmp_path):
    """A sweep's trials each have their own event files; under DDP with 2 processes only rank 0
    writes (one process's files) and the confusion matrix counts both ranks' test sentences."""
    from test_distributed import clean_env

    quick = [*TINY["sentiment"], "trainer.max_epochs=1", "logger=tensorboard"]
    sweep = tmp_path / "sweep"
    code, _, err = run_module("zoo", ["-m", "task=sentiment", "cell=rnn,gru", *quick, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err
    for trial, cell in ((0, "RNNCell"), (1, "GRUCell")):
        hparams = events(sweep / str(trial)).SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        assert cell.encode() in hparams  # its own config, in its own folder

    two = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "zoo", "task=sentiment", *quick, "trainer=ddp", "trainer.devices=2",
                        "trainer.accelerator=cpu", f"hydra.run.dir={two}"], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    files = list((two / "tensorboard").glob("events.out.tfevents.*"))
    assert files and len({f.name.split(".")[-2] for f in files}) == 1  # one process id: rank 0's
    assert not [p for p in two.rglob("events.out.tfevents.*") if p.parent != two / "tensorboard"]
    rows = table_rows(text_of(events(two), "test/confusion"))
    assert sum(int(c) for r in rows for c in r[1:]) == 16
