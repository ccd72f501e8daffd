"""data=tsv_pairs (tab-separated sentence pairs, the Tatoeba/Anki layout), and what a translation
run reports: task.metrics among BLEU, chrF, WER, CER on detokenised, cased text, and its test
translations in test_translations.json."""
from __future__ import annotations

import json
import re
import shlex

import pytest
from conftest import QUIET, ROOT, check_metrics, run_module

from zoo.data.tsv_pairs import TSVPairs
from zoo.errors import ConfigError, DataError
from zoo.tasks.translation import chosen_metrics

ATTRIBUTION = "CC-BY 2.0 (France) Attribution: tatoeba.org #{n} (CK) & #{m} (Wittydev)"
ENGLISH = ["Go.", "Run!", "Who?", "Wow!", "Fire!", "Help!", "Stop!", "Wait!", "Hello!", "I see.", "I try.", "I won!",
           "Oh no!", "Relax.", "Smile.", "Attack!", "Get up.", "Got it!", "He ran.", "Hop in."]
FRENCH = ["Va !", "Cours !", "Qui ?", "Ça alors !", "Au feu !", "À l'aide !", "Arrête-toi !", "Attends !", "Bonjour !",
          "Je comprends.", "J'essaye.", "J'ai gagné !", "Oh non !", "Détends-toi !", "Souris.", "Attaque !",
          "Lève-toi.", "Compris !", "Il a couru.", "Monte."]


def anki(path, n=40, lines=None):
    """An eng-fra.txt of n pairs: English, French, attribution."""
    rows = lines or [f"{ENGLISH[i % 20]}\t{FRENCH[i % 20]}\t{ATTRIBUTION.format(n=1000 + i, m=2000 + i)}"
                     for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_pairs_are_read_with_extra_columns_ignored_and_val_test_cut_by_the_seed(tmp_path):
    path = anki(tmp_path / "eng-fra.txt")
    dm = TSVPairs(path=str(path), val_fraction=0.1, test_fraction=0.15, split_seed=0)
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [30, 4, 6]
    test = [(src, ref) for _, _, ref, src, _ in dm.data["test"]]
    assert all(FRENCH[ENGLISH.index(src)] == ref for src, ref in test)  # the pair, cased; no attribution
    assert not any("CC-BY" in t for s in ("train", "val", "test") for it in dm.data[s] for t in it[2:4])
    again = TSVPairs(path=str(path), val_fraction=0.1, test_fraction=0.15, split_seed=0)
    again.setup()
    assert [it[2:4] for it in again.data["test"]] == [it[2:4] for it in dm.data["test"]]  # the same seed, the same cut
    other = TSVPairs(path=str(path), val_fraction=0.1, test_fraction=0.15, split_seed=1)
    other.read_split("train")
    assert [p.where for p in other._splits["test"]] != [p.where for p in dm._splits["test"]]
    held = {p.where for s in ("val", "test") for p in dm._splits[s]}
    assert not held & {p.where for p in dm._splits["train"]}  # no pair in two splits

    swapped = TSVPairs(path=str(path), columns=[1, 0], val_fraction=0.1, test_fraction=0.1)
    swapped.setup()
    src, ref = swapped.data["test"][0][3], swapped.data["test"][0][2]
    assert src in FRENCH and ref == ENGLISH[FRENCH.index(src)]


def test_val_and_test_files_of_their_own(tmp_path):
    dm = TSVPairs(path=str(anki(tmp_path / "train.tsv", 20)), val=str(anki(tmp_path / "val.tsv", 3)),
                  test=str(anki(tmp_path / "test.tsv", 5)))
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [20, 3, 5]


def test_bad_lines_are_named_or_skipped_and_counted(tmp_path):
    good = [f"{e}\t{f}" for e, f in zip(ENGLISH, FRENCH)]
    cases = [("Go. Va !", r"pairs.txt:3: no tab \(expected SOURCE<TAB>TARGET\)"),
             ("Go.\t", r"pairs.txt:3: empty target sentence"),
             ("\t\tCC-BY", r"pairs.txt:3: empty source sentence"),
             ("", r"pairs.txt:3: empty line")]
    for bad, message in cases:
        path = anki(tmp_path / "pairs.txt", lines=good[:2] + [bad] + good[2:])
        with pytest.raises(DataError, match=message + r".*data.on_bad=skip"):
            TSVPairs(path=str(path), val_fraction=0.1, test_fraction=0.1).setup()
    path = anki(tmp_path / "pairs.txt", lines=good[:2] + [bad for bad, _ in cases] + good[2:])
    dm = TSVPairs(path=str(path), val_fraction=0.1, test_fraction=0.1, on_bad="skip")
    dm.setup()
    assert dm.bad.counts == {"lines without enough columns": 1, "empty lines": 1, "empty sentences": 2}
    assert sum(len(dm.data[s]) for s in ("train", "val", "test")) == 20
    with pytest.raises(DataError, match=r"pairs.txt:1: 2 tab-separated columns, but data.columns=\[0, 2\] needs 3"):
        TSVPairs(path=str(path), columns=[0, 2]).setup()
    with pytest.raises(DataError, match="none.txt: file not found"):
        TSVPairs(path=str(tmp_path / "none.txt")).setup()


def test_impossible_settings_are_config_errors(tmp_path):
    path = str(tmp_path / "x.txt")
    with pytest.raises(ConfigError, match="must each be in"):
        TSVPairs(path=path, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConfigError, match="data.val_fraction=0 and no data.val file"):
        TSVPairs(path=path, val_fraction=0)
    with pytest.raises(ConfigError, match=r"data.columns=\[1, 1\]"):
        TSVPairs(path=path, columns=[1, 1])
    with pytest.raises(ConfigError, match="data.tokenizer=whitespace is not one of: words, chars, bpe, unigram"):
        TSVPairs(path=path, tokenizer="whitespace")
    with pytest.raises(ConfigError, match="task.metrics=.*unknown ter; choose among bleu, chrf, wer, cer"):
        chosen_metrics(["bleu", "ter"])
    assert chosen_metrics(["wer", "bleu", "wer"]) == ["wer", "bleu"]


TINY_MODEL = ["encoder.dim=8", "cell.hidden_size=16", "head.embed_dim=8", "head.attention_dim=8", "data.batch_size=8",
              "task.decode.strategy=greedy", "trainer.max_epochs=1", *QUIET]


def readme_tsv_command() -> list[str]:
    """The README's tsv_pairs command (shown in a fenced block: its file is the user's download)."""
    text = (ROOT / "README.md").read_text()
    line = next(m.group(0) for m in re.finditer(r"python -m zoo [^\n]*data=tsv_pairs[^\n]*", text))
    words = shlex.split(line, comments=True)
    assert words[:3] == ["python", "-m", "zoo"], line
    return words[3:]


@pytest.mark.slow
def test_the_readme_command_reports_the_chosen_metrics_and_writes_the_test_translations(tmp_path, monkeypatch):
    args = readme_tsv_command()
    name = next(a.split("=", 1)[1] for a in args if a.startswith("data.path="))
    anki(tmp_path / name, 60)
    monkeypatch.chdir(tmp_path)  # the command names the file as the user has it: in the current folder
    code, _, err = run_module("zoo", [*args, *TINY_MODEL, "task.metrics=[bleu,chrf,wer,cer]",
                                      "task.lowercase_bleu=true", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 0, err
    run = tmp_path / "run"
    metrics = check_metrics(json.loads((run / "metrics.json").read_text()),
                            {f"test/{m}" for m in ("bleu", "chrf", "wer", "cer", "bleu_lc", "chrf_lc", "loss")})
    assert metrics["test/wer"] > 0.5 and metrics["test/cer"] > 0  # an untrained model: far from the references
    rows = json.loads((run / "test_translations.json").read_text())
    assert len(rows) == 3 and all(set(r) == {"source", "reference", "hypothesis"} for r in rows)  # 5% of 60
    assert all(r["reference"] == FRENCH[ENGLISH.index(r["source"])] for r in rows)  # cased, as in the file


@pytest.mark.slow
def test_a_monitored_metric_that_is_not_measured_is_a_clear_error(tmp_path):
    code, _, err = run_module("zoo", ["task=translation", "task.metrics=[wer,cer]", "data.train_size=16",
                                      "data.val_size=4", "data.test_size=4", *TINY_MODEL, "trainer.fast_dev_run=true",
                                      f"hydra.run.dir={tmp_path}"])
    assert code == 2 and "monitor.metric=val/bleu is not measured with task.metrics=['wer', 'cer']" in err, err
    assert "Traceback" not in err
