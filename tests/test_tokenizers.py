"""Tokenizers (data.tokenizer=words|chars|bpe|unigram): text comes back from its tokens, the
vocabulary has data.vocab_size entries, a trained tokenizer travels in the checkpoint, and
predict uses that one."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SHARED_DATA, TINY, compose, run_module

from zoo.data.spec import DataSpec
from zoo.data.tokenizers import KINDS, TextTokenizer, vocabulary_for
from zoo.data.toy_translation import make_pairs
from zoo.errors import ConfigError

SENTENCES = ["Two young, White males are outside near many bushes.",
             "Ein Boston Terrier läuft über saftig-grünes Gras vor einem weißen Zaun.",
             "Don't stop: it's 3 o'clock!", "A man (in red) rides a bike."]
CORPUS = SENTENCES * 5 + [s for pair in make_pairs(300, 0) for s in pair]


@pytest.mark.parametrize("kind", KINDS)
def test_each_tokenizer_gives_the_text_back(kind):
    tok = TextTokenizer.train(kind, CORPUS, vocab_size=200)
    for text in SENTENCES:
        tokens = tok.split(text)
        assert tokens and all(t for t in tokens)
        if kind in ("chars", "bpe", "unigram"):
            assert tok.join(tokens) == text  # detokenised: the sentence itself, for BLEU
        else:  # words by spaces: the same tokens again, and spaced text comes back as it was
            assert tok.split(tok.join(tokens)) == tokens
    spaced = "the dog sees a cat ."
    assert tok.join(tok.split(spaced)) == spaced
    if kind in ("bpe", "unigram"):
        assert len(tok.split("Ein Boston Terrier")) > 3  # subwords, not words
        assert any(t.startswith("▁") for t in tok.split("Ein Hund")) and "▁" not in tok.join(tok.split("Ein Hund"))
    lower = TextTokenizer.train(kind, CORPUS, vocab_size=200, lowercase=True)
    assert lower.join(lower.split("Two young, White males")) == lower.join(lower.split("two young, white males"))
    assert "W" not in "".join(lower.split("White"))


def test_vocab_size_is_honoured_or_refused_with_the_size_needed():
    for kind in ("bpe", "unigram"):
        tok = TextTokenizer.train(kind, CORPUS, vocab_size=150)
        size = len(tok.vocabulary())
        assert size == 150 if kind == "bpe" else 120 <= size <= 150  # unigram's trainer stops near its target
        assert tok.vocabulary().itos[:4] == ["<PAD>", "<START>", "<END>", "<UNK>"]
        with pytest.raises(ConfigError, match=r"data.vocab_size=20 is too small .* at least \d+"):
            TextTokenizer.train(kind, CORPUS, vocab_size=20)
    words = TextTokenizer.train("words", CORPUS)
    tokens = [words.split(t) for t in CORPUS]
    assert len(vocabulary_for(words, tokens, vocab_size=30)) == 30  # the 26 most frequent and the specials
    assert len(vocabulary_for(words, tokens)) > 60  # null: every word
    assert len(TextTokenizer.train("bpe", CORPUS).vocabulary()) < 8000  # the default, for a corpus this small


def test_a_trained_tokenizer_travels_in_the_spec_as_json():
    tok = TextTokenizer.train("bpe", CORPUS, vocab_size=150)
    spec = DataSpec(vocab=tok.vocabulary(), tokenizer=tok, src_tokenizer=TextTokenizer("chars"))
    back = DataSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back.tokenizer == tok and back.src_tokenizer.kind == "chars"
    assert back.tokenizer.split(SENTENCES[1]) == tok.split(SENTENCES[1]) and back.vocab.itos == spec.vocab.itos
    assert json.loads(spec.to_dict()["tokenizer"]["model"])["model"]["type"] == "BPE"  # tokenizers' own format
    assert DataSpec.from_dict({"vocab": None}).tokenizer is None  # a spec saved before tokenizers travelled


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not here")
def test_bpe_gives_the_same_ids_in_every_process():
    """DDP ranks each train their own tokenizer: they must agree on every id."""
    code = ("import gzip, json; from zoo.data.tokenizers import TextTokenizer; "
            f"lines = gzip.open({str(SHARED_DATA / 'multi30k' / 'train.de.gz')!r}, 'rt').read().splitlines()[:3000]; "
            "print(json.dumps(TextTokenizer.train('bpe', lines, vocab_size=1000).vocabulary().itos))")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           check=False) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and len(json.loads(runs[0].stdout)) == 1000


def test_unigram_is_refused_under_ddp(monkeypatch):
    """Its trainer picks other pieces in another process: ranks training their own would disagree."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="data.tokenizer=unigram with several processes .* Use data.tokenizer=bpe"):
        TextTokenizer.train("unigram", CORPUS, vocab_size=150)
    assert len(TextTokenizer.train("bpe", CORPUS, vocab_size=150).vocabulary()) == 150


def _train(run_dir, *overrides):
    from zoo.run.train import train

    train(compose(*overrides, "trainer.max_epochs=1"), run_dir=run_dir, name="tok")
    return run_dir


@pytest.mark.slow
def test_the_checkpoint_carries_the_trained_tokenizers_and_predict_uses_them(tmp_path):
    import zoo

    run = _train(tmp_path / "tr", "task=translation", *TINY["translation"], "data.tokenizer=bpe", "data.vocab_size=150",
                 "task.decode.strategy=greedy")  # an untrained beam runs to the length limit: slow
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    spec = ckpt["zoo"]["spec"]
    assert spec["tokenizer"]["kind"] == spec["src_tokenizer"]["kind"] == "bpe" and len(spec["vocab"]["tokens"]) == 150
    assert json.loads(spec["src_tokenizer"]["model"])["model"]["type"] == "BPE"
    assert spec == json.loads((run / "data_spec.json").read_text())  # what resume reads: the same

    model = zoo.load(run)
    sentence = "the big dog sees a red ball ."
    src = model.spec.src_tokenizer.split(sentence)
    assert model.spec.src_tokenizer == TextTokenizer.from_dict(spec["src_tokenizer"])
    assert len(src) > len(sentence.split())  # subwords
    with torch.no_grad():
        out = model(torch.tensor([model.spec.src_vocab.encode(src)]), torch.tensor([len(src)]))
    expected = model.spec.tokenizer.join(model.spec.vocab.decode(out.tokens[0].tolist()))
    code, stdout, err = run_module("zoo.predict", [str(run), sentence, "--json"])
    assert code == 0, err
    got = json.loads(stdout.strip().splitlines()[-1])["translation"]
    assert got == expected and "▁" not in got  # the checkpoint's tokenizers, and detokenised
    hyps = [t["hypothesis"] for t in json.loads((run / "test_translations.json").read_text())]
    assert hyps and not any("▁" in h for h in hyps)


@pytest.mark.slow
def test_sentiment_with_subwords_predicts_from_its_checkpoint(tmp_path):
    run = _train(tmp_path / "st", "task=sentiment", *TINY["sentiment"], "data.tokenizer=unigram", "data.vocab_size=80")
    spec = json.loads((run / "data_spec.json").read_text())
    assert spec["tokenizer"]["kind"] == "unigram" and 60 <= len(spec["vocab"]["tokens"]) <= 80
    code, stdout, err = run_module("zoo.predict", [str(run), "the plot was not good .", "--json"])
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["label"] in ("negative", "positive")


def test_tokenizer_names_are_checked():
    with pytest.raises(ConfigError, match="data.tokenizer=sentencepiece is not one of: whitespace, words, chars"):
        TextTokenizer.train("sentencepiece", CORPUS)
    cfg = compose("task=translation")
    assert cfg.data.tokenizer == "words" and cfg.data.vocab_size is None  # today's behaviour is the default
