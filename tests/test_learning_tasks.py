"""Each task learns on its built-in data: a metric crosses a bar that an untrained or blind
model (or one without recurrence) cannot."""
from __future__ import annotations

import pytest

import collections
import json
import math

import torch
from conftest import QUIET, compose

import zoo.run.train
from zoo.data.stories import make_text
from zoo.data.tag_grammar import make_sentences
from zoo.run.train import train

pytestmark = pytest.mark.slow  # trainings that must learn: seconds to a minute each


def run(tmp_path, name, *overrides) -> dict:
    train(compose(*overrides, *QUIET), run_dir=tmp_path / name, name=name)
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_sentiment_reads_negation_and_but(tmp_path):
    m = run(tmp_path, "s", "task=sentiment", "data.val_size=300", "data.test_size=300", "trainer.max_epochs=3")
    assert m["test/acc"] > 0.9 and m["test/f1"] > 0.9  # labels are balanced: a blind model gets 0.5


def test_tagger_beats_the_one_word_at_a_time_baseline(tmp_path):
    m = run(tmp_path, "t", "task=tagging", "data.train_size=1500", "data.val_size=300", "data.test_size=300",
            "cell.hidden_size=64", "encoder.dim=32", "trainer.max_epochs=4")
    # the best a tagger without context can do: each word's most frequent tag
    counts = collections.defaultdict(collections.Counter)
    for words, tags in make_sentences(20000, 7):
        for w, t in zip(words, tags):
            counts[w][t] += 1
    baseline = sum(c.most_common(1)[0][1] for c in counts.values()) / sum(sum(c.values()) for c in counts.values())
    assert baseline < 0.9
    assert m["test/acc"] > baseline + 0.07


def test_video_rnn_beats_a_per_frame_classifier(tmp_path, monkeypatch):
    common = ["task=video", "data.train_size=600", "data.val_size=150", "data.test_size=150", "trainer.max_epochs=6"]
    with_memory = run(tmp_path, "rnn", *common)
    real_build = zoo.run.train.build_task

    def without_recurrence(cfg, spec):  # a vanilla cell with W_hh = 0, frozen: h_t = tanh(W_xh x_t + b)
        task = real_build(cfg, spec)
        for cell in task.recurrence.cells:
            with torch.no_grad():
                cell.W_hh.zero_()
            cell.W_hh.requires_grad_(False)
        return task

    monkeypatch.setattr(zoo.run.train, "build_task", without_recurrence)
    per_frame = run(tmp_path, "frame", *common, "cell=rnn")  # (an LSTM would still remember through c)
    assert per_frame["test/acc"] < 0.6  # one frame cannot show a motion
    assert with_memory["test/acc"] > per_frame["test/acc"] + 0.25


def test_seqimage_reads_digits_row_by_row(tmp_path):
    m = run(tmp_path, "q", "task=seqimage", "trainer.max_epochs=12")
    assert m["test/acc"] > 0.85  # ten classes: chance is 0.1


def test_char_lm_learns_the_text_and_writes_words(tmp_path):
    m = run(tmp_path, "lm", "task=charlm", "data.stories=800", "cell.num_layers=1", "cell.hidden_size=128",
            "data.batch_size=32", "trainer.max_epochs=3", "task.sample.length=300", "task.sample.temperature=0.5")
    text = make_text(800, 0)
    n = len(text)
    unigram = -sum(c / n * math.log(c / n) for c in collections.Counter(text).values())  # a memoryless model
    assert m["test/loss"] < unigram - 1.5, (m["test/loss"], unigram)
    known = set(text.replace(".", " ").replace(",", " ").replace(":", " ").split())
    sample = (tmp_path / "lm" / "samples.txt").read_text().splitlines()[1:]
    words = " ".join(sample).replace(".", " ").replace(",", " ").replace(":", " ").split()[:-1]
    assert sum(w in known for w in words) / len(words) > 0.8


def test_translation_learns_word_order_and_words(tmp_path):
    m = run(tmp_path, "tr", "task=translation", "data.train_size=2500", "data.val_size=100", "data.test_size=100",
            "trainer.max_epochs=5")
    assert m["test/bleu"] > 60  # an untrained decoder scores about 0
