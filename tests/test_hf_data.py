"""Hugging Face image sets used the way ``datasets`` means them to be: images decoded when a batch
needs them (never all at set-up), a streamed ``IterableDataset`` path for sets larger than
memory, and ``data.revision`` reaching ``load_dataset``. All on local parquet sets made here."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import QUIET, ROOT, check_metrics, compose
from torch.utils.data import IterableDataset

from zoo.data.hf_captions import HFCaptions
from zoo.data.hf_image_classification import HFImageClassification
from zoo.errors import ConfigError, DataError

CLASSES = ["cat", "dog", "owl"]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def image_set(folder: Path, n: int = 40, splits: tuple[str, ...] = ("train",), files: int = 1, side: int = 8,
              class_label: bool = True, broken: int | None = None) -> Path:
    """Parquet files of grey images whose first pixel is their number k (unique over all splits),
    label CLASSES[k % 3], captions naming both; image ``broken`` is not a PNG."""
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=CLASSES) if class_label else datasets.Value("string"),
                                  "caption": datasets.Sequence(datasets.Value("string"))})
    rng = np.random.default_rng(0)
    k = 0
    for split in splits:
        for f in range(files):
            rows = {"image": [], "label": [], "caption": []}
            for _ in range(n // files):
                pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
                pixels[0, 0] = k
                rows["image"].append({"bytes": b"not a png" if k == broken else _png(pixels), "path": None})
                rows["label"].append(k % 3 if class_label else CLASSES[k % 3])
                rows["caption"].append([f"a {CLASSES[k % 3]} number {k}", f"the {CLASSES[k % 3]}"])
                k += 1
            datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}-{f}.parquet"))
    return folder


@pytest.fixture(autouse=True)
def _no_shutdown_sleep(monkeypatch):
    """datasets sleeps 5 s whenever the reader threads of a shuffled parquet stream stop, for
    apache/arrow#45214 (which datasets' own code treats as fixed after pyarrow 24); tests read many."""
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture
def opened(monkeypatch):
    """How many images were opened (decoded) so far: every decoder here goes through PIL.Image.open."""
    count = [0]
    real = PIL.Image.open

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting)
    return count


def ids(batch) -> list[int]:
    return [round(v * 255) for v in batch["images"][:, 0, 0, 0].tolist()]


def test_image_classification_decodes_only_what_a_batch_needs(tmp_path, opened):
    folder = image_set(tmp_path / "set", n=60)
    dm = HFImageClassification(name="parquet", data_dir=str(folder), batch_size=8, seed=0)
    dm.setup()
    assert opened[0] <= 1  # the labels are read, and one image for the shape; not every image
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [48, 6, 6]
    assert dm.spec.labels == CLASSES and dm.spec.image_shape == (1, 8, 8)
    before = opened[0]
    batch = next(iter(dm.train_dataloader()))
    assert opened[0] - before == 8 and batch["images"].shape == (8, 1, 8, 8)
    assert all(CLASSES[y] == CLASSES[k % 3] for k, y in zip(ids(batch), batch["labels"].tolist()))
    seen = {k for s in ("train", "val", "test") for b in dm.eval_dataloader(s) for k in ids(b)}
    assert seen == set(range(60))  # every image in one split, decoded when its batch came


def test_captions_read_no_image_at_set_up(tmp_path, opened):
    folder = image_set(tmp_path / "set", n=40, splits=("train", "validation", "test"))
    dm = HFCaptions(name="parquet", data_dir=str(folder), image_size=8, batch_size=4, eval_batch_size=4,
                    num_workers=0)
    dm.setup()
    assert opened[0] == 0 and [len(dm.splits[s].names) for s in ("train", "val", "test")] == [40, 40, 40]
    batch = next(iter(dm.val_dataloader()))
    assert opened[0] == 4 and batch["images"].shape == (4, 3, 8, 8)
    k = ids(batch)[0]  # the image and its own captions travel together
    assert batch["refs"][0] == [f"a {CLASSES[k % 3]} number {k}", f"the {CLASSES[k % 3]}"]


def test_a_broken_image_is_named_when_reached_or_found_at_set_up_when_asked(tmp_path):
    folder = image_set(tmp_path / "set", n=30, splits=("train", "validation", "test"), broken=3)
    dm = HFImageClassification(name="parquet", data_dir=str(folder), batch_size=30)
    dm.setup()
    with pytest.raises(DataError, match=r"parquet \[train\] row 3: cannot decode the image .*data.check_images=true"):
        next(iter(dm.eval_dataloader("train")))
    with pytest.raises(DataError, match=r"row 3: cannot decode the image"):
        HFImageClassification(name="parquet", data_dir=str(folder), check_images=True).setup()
    dm = HFImageClassification(name="parquet", data_dir=str(folder), check_images=True, on_bad="skip", batch_size=30)
    dm.setup()
    assert len(dm.data["train"]) == 29 and 3 not in ids(next(iter(dm.eval_dataloader("train"))))

    caps = HFCaptions(name="parquet", data_dir=str(folder), image_size=8, num_workers=0, eval_batch_size=30)
    caps.setup()
    with pytest.raises(DataError, match=r"parquet \[train\] row 3: cannot decode image"):
        next(iter(caps.eval_dataloader("train")))
    caps = HFCaptions(name="parquet", data_dir=str(folder), image_size=8, num_workers=0, check_images=True,
                      on_bad="skip")
    caps.setup()
    assert len(caps.splits["train"].names) == 29


def _epoch(loader) -> list[int]:
    return [k for b in loader for k in ids(b)]


def test_streaming_is_an_iterable_with_a_shuffle_buffer_and_hash_cut_splits(tmp_path, opened):
    folder = image_set(tmp_path / "set", n=80)
    dm = HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, shuffle_buffer=50,
                               batch_size=8, seed=0)
    dm.setup()
    assert opened[0] == 1 and dm.spec.labels == CLASSES and dm.spec.image_shape == (1, 8, 8)
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, IterableDataset)
    with pytest.raises(TypeError):
        len(loader.dataset)  # a stream has no length
    first, second = _epoch(loader), _epoch(loader)
    val, test = (_epoch(dm.eval_dataloader(s)) for s in ("val", "test"))
    assert sorted(first) == sorted(second) and first != second  # the buffer is reseeded each epoch
    assert first != sorted(first)  # shuffled, not in file order
    assert not set(first) & set(val) and not set(first) & set(test) and not set(val) & set(test)
    assert sorted(first + val + test) == list(range(80)) and val and test  # every row in exactly one split
    again = HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, seed=5)
    again.setup()
    assert _epoch(again.eval_dataloader("val")) == val  # the cut depends on the rows, not the batch order
    assert [k for pixels, _ in dm.data["test"][:3] for k in [int(pixels[0, 0, 0])]] == test[:3]


def test_streaming_shards_over_workers_and_uses_the_sets_own_splits(tmp_path):
    folder = image_set(tmp_path / "set", n=40, splits=("train", "validation", "test"), files=2)
    dm = HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, batch_size=4, num_workers=2)
    dm.setup()
    assert sorted(_epoch(dm.train_dataloader())) == list(range(40))  # two workers, each row once
    assert sorted(_epoch(dm.eval_dataloader("val"))) == list(range(40, 80))
    assert sorted(_epoch(dm.eval_dataloader("test"))) == list(range(80, 120))


def test_streaming_ranks_read_disjoint_shares(tmp_path, monkeypatch):
    import zoo.data.hf_image_classification as module

    folder = image_set(tmp_path / "set", n=40)
    dm = HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, batch_size=4)
    dm.setup()
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(module, "dist_rank_world", lambda rank=rank: (rank, 2))
        shares.append(_epoch(dm.train_dataloader()))
    assert not set(shares[0]) & set(shares[1]) and shares[0] and shares[1]
    monkeypatch.setattr(module, "dist_rank_world", lambda: (0, 1))
    assert sorted(shares[0] + shares[1]) == sorted(_epoch(dm.train_dataloader()))  # together: every training row


def test_streaming_needs_label_names_before_reading(tmp_path):
    folder = image_set(tmp_path / "set", n=30, class_label=False)
    with pytest.raises(DataError, match=r"label names must be known before the stream is read.*data.labels="):
        HFImageClassification(name="parquet", data_dir=str(folder), streaming=True).setup()
    dm = HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, labels=["owl", "cat", "dog"])
    dm.setup()
    with pytest.raises(ConfigError, match="data.check_images=true reads every image at set-up, which a stream cannot"):
        HFImageClassification(name="parquet", data_dir=str(folder), streaming=True, check_images=True)
    batch = next(iter(dm.eval_dataloader("train")))
    assert all(["owl", "cat", "dog"][y] == CLASSES[k % 3] for k, y in zip(ids(batch), batch["labels"].tolist()))


def test_revision_reaches_load_dataset_and_a_hub_set_offline_fails_fast(tmp_path, monkeypatch):
    import datasets

    folder = image_set(tmp_path / "set", n=30)
    asked = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    HFImageClassification(name="parquet", data_dir=str(folder), revision="v1.2").hf.load_dict()
    HFCaptions(name="parquet", data_dir=str(folder), revision="3f2a9c1").hf.load_dict()
    assert [kw["revision"] for kw in asked] == ["v1.2", "3f2a9c1"]
    monkeypatch.setattr(datasets, "load_dataset", real)
    for streaming in (False, True):
        t = time.monotonic()
        with pytest.raises(DataError, match=r"data.name=some-user/no-such-set data.revision=abc.*Offline"):
            HFImageClassification(name="some-user/no-such-set", revision="abc", streaming=streaming).setup()
        assert time.monotonic() - t < 30


@pytest.mark.parametrize("option", sorted(p.stem for p in (ROOT / "conf" / "data").glob("hf_*.yaml")))
def test_every_hub_loader_pins_data_revision(option, monkeypatch):
    """data.revision reaches load_dataset from every conf/data/hf_*.yaml (a loader added later too)."""
    import datasets
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    asked = []

    def load_dataset(*args, **kw):
        asked.append(kw)
        raise FileNotFoundError("not here")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = OmegaConf.load(ROOT / "conf" / "data" / f"{option}.yaml")
    cfg.merge_with({"name": "some-user/some-set", "revision": "v2.0", "seed": 0})
    data = instantiate(cfg)
    with pytest.raises(DataError, match=r"data.name=some-user/some-set data.revision=v2.0"):
        data.setup("fit")
    assert asked and all(kw["revision"] == "v2.0" for kw in asked)


def test_a_streamed_run_trains_validates_and_tests(tmp_path):
    from zoo.run.train import train

    folder = image_set(tmp_path / "set", n=60, side=12)
    cfg = compose("task=seqimage", "data=hf_image_classification", "data.name=parquet", f"data.data_dir={folder}",
                  "data.streaming=true", "data.batch_size=8", "cell.hidden_size=8", "trainer.fast_dev_run=true",
                  *QUIET)
    train(cfg, run_dir=tmp_path / "run", name="streamed")
    check_metrics(json.loads((tmp_path / "run" / "metrics.json").read_text()), {"test/acc", "test/loss"})
