"""Sequence data: the loaders on real files (the shared data sets, and files written here),
Hugging Face loaders on local files, bucketing, and bad input."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from zoo.data.batching import BucketBatchSampler
from zoo.data.charstream import HFText, TextFile
from zoo.data.classification import DelimitedText, HFTextClassification, LabelledLines
from zoo.data.digits import Digits
from zoo.data.frames import FrameFolders, HFFrames
from zoo.data.hf_image_classification import HFImageClassification
from zoo.data.parallel import HFTranslation, ParallelFiles
from zoo.data.tagging import IGNORE, CoNLL, CoNLLU, HFTokenClassification
from zoo.errors import DataError

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not here")


# -- bucketing ------------------------------------------------------------------------------

def test_bucket_sampler_covers_every_example_once_with_similar_lengths():
    lengths = list(np.random.default_rng(0).integers(1, 60, size=1000))
    s = BucketBatchSampler(lengths, 32, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(s)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 5  # a random batch would span about 55
    assert batches == list(BucketBatchSampler(lengths, 32, seed=3))  # deterministic
    s.set_epoch(1)
    assert list(s) != batches  # another epoch, another order
    shards = [list(BucketBatchSampler(lengths, 32, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])  # no rank waits for a batch that never comes
    assert set(i for sh in shards for b in sh for i in b) == set(range(1000))


# -- sentence classification ---------------------------------------------------------------------

@needs_shared
def test_sst2_labelled_lines():
    dm = LabelledLines(root=str(SHARED_DATA / "sst2"), train="stsa.binary.train", val="stsa.binary.dev",
                       test="stsa.binary.test")
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [6920, 872, 1821]
    assert dm.spec.labels == ["0", "1"] and len(dm.spec.vocab) > 10000
    b = next(iter(dm.val_dataloader()))
    assert b["tokens"].shape[0] == b["labels"].shape[0] == len(b["lengths"])


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_labelled_lines_bad_input(tmp_path):
    write(tmp_path / "train.txt", "pos a good film\nneg a bad film\n")
    write(tmp_path / "val.txt", "pos fine\n\nneutral so so\n")
    write(tmp_path / "test.txt", "neg dull\n")
    kw = dict(root=str(tmp_path), train="train.txt", val="val.txt", test="test.txt")
    with pytest.raises(DataError, match=r"val.txt:2: empty line.*data.on_bad=skip"):
        LabelledLines(**kw).setup()
    dm = LabelledLines(**kw, on_bad="skip")
    dm.setup()
    assert dm.bad.counts == {"empty lines": 1, "unknown labels": 1} and len(dm.data["val"]) == 1
    write(tmp_path / "val.txt", "neutral so so\n")
    with pytest.raises(DataError, match=r"val.txt:1: label 'neutral' is not among the training labels"):
        LabelledLines(**kw).setup()
    with pytest.raises(DataError, match="nope.txt: file not found"):
        LabelledLines(**{**kw, "test": "nope.txt"}).setup()


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_delimited_text(tmp_path, suffix):
    sep = "," if suffix == "csv" else "\t"
    rows = [f"text{sep}label", f"a fine film{sep}pos", f'"bad, really bad"{sep}neg' if suffix == "csv" else f"bad{sep}neg"]
    for split in ("train", "val", "test"):
        write(tmp_path / f"{split}.{suffix}", "\n".join(rows) + "\n")
    dm = DelimitedText(root=str(tmp_path), train=f"train.{suffix}", val=f"val.{suffix}", test=f"test.{suffix}")
    dm.setup()
    assert dm.spec.labels == ["neg", "pos"] and len(dm.data["train"]) == 2
    with pytest.raises(DataError, match="no column"):
        DelimitedText(root=str(tmp_path), train=f"train.{suffix}", val=f"val.{suffix}", test=f"test.{suffix}",
                      text_column="sentence").setup()


def test_hf_text_classification_from_local_csv(tmp_path):
    files = {}
    for split in ("train", "validation", "test"):
        files[split] = str(write(tmp_path / f"{split}.csv", "text,label\nnice one,1\nawful one,0\n"))
    dm = HFTextClassification(name="csv", data_files=files)
    dm.setup()
    assert dm.spec.labels == ["0", "1"] and len(dm.data["test"]) == 2


# -- tagging ------------------------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("column,n_tags", [("upos", 17), ("xpos", 49)])
def test_ud_english_ewt_conllu(column, n_tags):
    dm = CoNLLU(root=str(SHARED_DATA / "ud-english-ewt"), train="en_ewt-ud-train.conllu",
                val="en_ewt-ud-dev.conllu", test="en_ewt-ud-test.conllu", column=column)
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [12544, 2001, 2077]
    assert len(dm.spec.labels) == n_tags
    b = next(iter(dm.train_dataloader()))
    assert (b["labels"] == IGNORE).sum() == (b["tokens"] == 0).sum()  # padding has no label


CONLLU = """# sent_id = 1
1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_

1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_skips_ranges_and_empty_nodes_and_names_malformed_rows(tmp_path):
    for split in ("train", "val", "test"):
        write(tmp_path / f"{split}.conllu", CONLLU)
    kw = dict(root=str(tmp_path), train="train.conllu", val="val.conllu", test="test.conllu")
    dm = CoNLLU(**kw)
    dm.setup()
    vocab, labels = dm.spec.vocab, dm.spec.labels
    first = dm.data["train"][0]
    assert [vocab.itos[i] for i in first[0]] == ["do", "n't", "go"]
    assert [labels[i] for i in first[1]] == ["AUX", "PART", "VERB"]
    write(tmp_path / "val.conllu", CONLLU.replace("3\tgo\tgo\tVERB", "3\tgo VERB"))
    with pytest.raises(DataError, match=r"val.conllu:5: malformed CoNLL-U row"):
        CoNLLU(**kw).setup()


def test_conll_two_columns(tmp_path):
    text = "-DOCSTART- O\n\nEU B-ORG\nrejects O\n\nPeter B-PER\n"
    for split in ("train", "val", "test"):
        write(tmp_path / f"{split}.txt", text)
    dm = CoNLL(root=str(tmp_path), train="train.txt", val="val.txt", test="test.txt")
    dm.setup()
    assert len(dm.data["train"]) == 2 and dm.spec.labels == ["B-ORG", "B-PER", "O"]


def test_hf_token_classification_with_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=["NOUN", "VERB"]))})
    ds = datasets.Dataset.from_dict({"tokens": [["dogs", "run"], ["cats", "sleep"]] * 5,
                                     "tags": [[0, 1], [0, 1]] * 5}, features=features)
    for split in ("train", "validation", "test"):
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    dm = HFTokenClassification(name="parquet", data_dir=str(tmp_path))
    dm.setup()
    assert dm.spec.labels == ["NOUN", "VERB"]


# -- translation --------------------------------------------------------------------------------

@needs_shared
def test_multi30k_parallel_files():
    dm = ParallelFiles(root=str(SHARED_DATA / "multi30k"), src_lang="en", tgt_lang="de", pattern="{split}.{lang}.gz",
                       splits={"test": "test_2016_flickr"}, min_count=2)
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [29000, 1014, 1000]
    assert len(dm.spec.src_vocab) > 5000 and len(dm.spec.vocab) > 7000


def gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def test_parallel_files_must_align_and_empty_lines_are_named(tmp_path):
    for split in ("train", "val", "test"):
        gz(tmp_path / f"{split}.en.gz", ["a dog .", "a cat ."])
        gz(tmp_path / f"{split}.de.gz", ["ein hund .", "eine katze ."])
    kw = dict(root=str(tmp_path), src_lang="en", tgt_lang="de", pattern="{split}.{lang}.gz")
    ParallelFiles(**kw).setup()
    gz(tmp_path / "val.de.gz", ["ein hund ."])
    with pytest.raises(DataError, match=r"val.en.gz has 2 lines but .*val.de.gz has 1: parallel files must be line-aligned"):
        ParallelFiles(**kw).setup()
    gz(tmp_path / "val.de.gz", ["ein hund .", ""])
    with pytest.raises(DataError, match=r"val.en.gz:2 / .*val.de.gz:2: empty target sentence"):
        ParallelFiles(**kw).setup()
    dm = ParallelFiles(**kw, on_bad="skip")
    dm.setup()
    assert dm.bad.counts == {"empty sentences": 1} and len(dm.data["val"]) == 1


def test_hf_translation_dicts(tmp_path):
    rows = [{"translation": {"en": "a dog .", "de": "ein hund ."}}, {"translation": {"en": "a cat .", "de": "eine katze ."}}]
    for split in ("train", "validation", "test"):
        write(tmp_path / f"{split}.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    dm = HFTranslation(name="json", data_dir=str(tmp_path), src_lang="en", tgt_lang="de", min_count=1)
    dm.setup()
    assert dm.data["test"][0][2] == "ein hund ."  # the reference is the target text
    with pytest.raises(DataError, match="no 'fr'"):
        HFTranslation(name="json", data_dir=str(tmp_path), src_lang="fr", tgt_lang="de").setup()


# -- character streams ----------------------------------------------------------------------------

@needs_shared
def test_tiny_shakespeare_split_by_position():
    dm = TextFile(path=str(SHARED_DATA / "tinyshakespeare" / "input.txt"), val_fraction=0.1, test_fraction=0.0)
    dm.setup()
    n = 1115394
    assert len(dm.data["train"]) == int(n * 0.9) and len(dm.data["val"]) == n - int(n * 0.9)
    assert (dm.data["test"] == dm.data["val"]).all()  # test_fraction=0: test on the held-out last 10%
    assert len(dm.spec.vocab) == 65 + 4


def test_text_file_problems(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        TextFile(path=str(tmp_path / "none.txt")).setup()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    with pytest.raises(DataError, match="not UTF-8"):
        TextFile(path=str(tmp_path / "latin1.txt")).setup()
    write(tmp_path / "tiny.txt", "abc")
    with pytest.raises(DataError, match="too short"):
        dm = TextFile(path=str(tmp_path / "tiny.txt"), val_fraction=0.4)
        dm.setup()
        dm.train_dataloader()


def test_hf_text_with_its_own_splits(tmp_path):
    files = {s: str(write(tmp_path / f"{s}.txt", f"{s} line one\n{s} line two\n" * 50)) for s in ("train", "validation")}
    dm = HFText(name="text", data_files=files, batch_size=2, eval_batch_size=2, bptt=10)
    dm.setup()
    assert dm.text["val"].startswith("validation line one") and dm.text["test"] == dm.text["val"]


# -- images as sequences, video ----------------------------------------------------------------------

def test_digits_split_and_shape():
    dm = Digits()
    dm.setup()
    assert sum(len(dm.data[s]) for s in ("train", "val", "test")) == 1797
    assert dm.spec.image_shape == (1, 8, 8) and dm.spec.labels == [str(d) for d in range(10)]
    b = next(iter(dm.train_dataloader()))
    assert b["images"].shape[1:] == (1, 8, 8) and b["images"].max() <= 1.0


def test_hf_image_classification_from_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "validation", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(3):
                Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{k}.png")
    dm = HFImageClassification(name="imagefolder", data_dir=str(tmp_path), image_size=8)
    dm.setup()
    assert dm.spec.labels == ["cat", "dog"] and dm.spec.image_shape == (1, 8, 8)


def test_frame_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for clip, n in (("a", 3), ("b", 5)):
            folder = tmp_path / split / clip
            folder.mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{k:03d}.png")
            (folder / "labels.txt").write_text("\n".join(["walk", "run"][k % 2] for k in range(n)) + "\n")
    dm = FrameFolders(root=str(tmp_path), train="train", val="val", test="test", image_size=16)
    dm.setup()
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (2, 5, 3, 16, 16) and sorted(b["lengths"].tolist()) == [3, 5]
    (tmp_path / "val" / "a" / "001.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="001.png: not a readable image"):
        FrameFolders(root=str(tmp_path), train="train", val="val", test="test").setup()


def test_hf_frames_sequences_of_images(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    frames = [[Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(3)] for _ in range(4)]
    features = datasets.Features({"frames": datasets.Sequence(datasets.Image()),
                                  "labels": datasets.Sequence(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"frames": frames, "labels": [["a", "b", "a"]] * 4}, features=features)
    for split in ("train", "validation", "test"):
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    dm = HFFrames(name="parquet", data_dir=str(tmp_path), image_size=8)
    dm.setup()
    assert dm.spec.labels == ["a", "b"] and len(dm.data["train"]) == 4
