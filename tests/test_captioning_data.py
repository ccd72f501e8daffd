"""Captioning data: the built-in shapes set, Karpathy-split JSON and Hugging Face loaders on
real files written here, the vocabulary, and what happens with bad input."""
from __future__ import annotations

import json
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.hf_captions import HFCaptions
from zoo.data.images import read_image
from zoo.data.karpathy import KarpathyCaptions
from zoo.data.shapes import COLOURS, ShapesCaptions, make_split
from zoo.data.vocab import SPECIALS, Vocabulary, tokenize_caption
from zoo.errors import DataError


def test_vocabulary_specials_min_count_and_round_trip():
    v = Vocabulary.build([["a", "red", "dog"], ["a", "red", "cat"], ["a", "bird"]], min_count=2)
    assert v.itos[:4] == list(SPECIALS) and v.itos[4:] == ["a", "red"]
    ids = v.encode(["a", "red", "zebra"], start=True, end=True)
    assert ids == [v.start_id, 4, 5, v.unk_id, v.end_id]
    assert v.decode(ids + [v.pad_id, 7]) == ["a", "red", "<UNK>"]  # stops at <END>
    assert Vocabulary.from_dict(json.loads(json.dumps(v.to_dict()))).itos == v.itos
    assert tokenize_caption("A Man, riding a BIKE!") == ["a", "man", "riding", "a", "bike"]


def test_shapes_is_deterministic_and_has_about_five_different_captions():
    a_img, a_caps = make_split(40, seed=3)
    b_img, b_caps = make_split(40, seed=3)
    c_img, _ = make_split(40, seed=4)
    assert np.array_equal(a_img, b_img) and a_caps == b_caps
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (40, 32, 32, 3) and a_img.dtype == np.uint8
    for caps in a_caps:
        assert len(caps) == 5 and len(set(caps)) == 5


def test_shapes_captions_name_the_colour_the_image_shows():
    images, captions = make_split(200, seed=5)
    checked = 0
    for img, caps in zip(images, captions):
        named = {w for c in caps for w in c.split()} & set(COLOURS)
        pix = img.reshape(-1, 3).astype(int)
        saturated = pix[(pix.max(1) - pix.min(1)) > 100]  # object pixels, not the pale background
        if len(named) != 1 or len(saturated) < 5:
            continue
        nearest = min(COLOURS, key=lambda c: np.abs(saturated.mean(0) - COLOURS[c]).sum())
        assert nearest == named.pop()
        checked += 1
    assert checked > 50


def test_shapes_splits_vocab_and_blind():
    dm = ShapesCaptions(train_images=50, val_images=10, test_images=10)
    dm.setup()
    assert {s: len(dm.splits[s].names) for s in dm.splits} == {"train": 50, "val": 10, "test": 10}
    assert "circle" in dm.vocab and dm.spec.vocab_size == len(dm.vocab)
    # a training example is an (image, caption) pair: an epoch holds every pair once, in batches of
    # batch_size and one smaller remainder (its place in the shuffled order varies)
    pairs = sum(len(ids) for ids in dm.splits["train"].ids)
    assert pairs == 250  # 50 images, 5 captions each
    batches = list(dm.train_dataloader())
    full, rest = divmod(pairs, dm.batch_size)
    assert sorted(len(b["images"]) for b in batches) == sorted([dm.batch_size] * full + [rest])
    batch = batches[0]
    assert batch["images"].shape[1:] == (3, 32, 32) and len(batch["captions"]) == len(batch["images"])
    assert batch["captions"][:, 0].eq(dm.vocab.start_id).all()
    blind = ShapesCaptions(train_images=50, val_images=10, test_images=10, blind=True)
    blind.setup()
    assert next(iter(blind.train_dataloader()))["images"].abs().sum() == 0
    ev = next(iter(blind.val_dataloader()))
    assert len(ev["refs"]) == 10 and ev["owner"].max() == 9 and len(ev["captions"]) == sum(len(r) for r in ev["refs"])
    assert dm.fingerprint("train") != blind.fingerprint("train")


# -- real files -------------------------------------------------------------------------

def write_images(folder, names, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / n)


def karpathy_json(tmp_path, images, name="dataset_flickr8k.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"dataset": "flickr8k", "images": images}))
    return path


def kimage(filename, split, *captions, filepath=None):
    im = {"filename": filename, "split": split, "imgid": 0,
          "sentences": [{"tokens": c.lower().split(), "raw": c} for c in captions]}
    if filepath:
        im["filepath"] = filepath
    return im


def test_karpathy_split_json_with_an_image_folder(tmp_path):
    names = [f"img{i}.jpg" for i in range(8)]
    write_images(tmp_path / "images" / "val2014", names)
    images = [kimage(n, ["train", "restval", "train", "val", "val", "test", "test", "train"][i],
                     f"a dog number {i}", f"the dog {i} runs", "a dog", filepath="val2014")
              for i, n in enumerate(names)]
    dm = KarpathyCaptions(json_path=str(karpathy_json(tmp_path, images, "dataset_coco.json")),
                          image_dir=str(tmp_path / "images"), image_size=24, batch_size=4)
    dm.setup()
    assert [len(dm.splits[s].names) for s in ("train", "val", "test")] == [4, 2, 2]  # restval is train
    assert dm.splits["val"].refs[0] == ["a dog number 3", "the dog 3 runs", "a dog"]
    b = next(iter(dm.val_dataloader()))
    assert b["images"].shape == (2, 3, 24, 24) and 0 <= b["images"].min() and b["images"].max() <= 1


def test_transparent_pngs_are_composited_onto_white(tmp_path):
    """RGBA, grey+alpha and palette PNGs with a transparent colour: the transparent parts become
    white (not the black stored under them), half-transparent red becomes pink."""
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)  # transparent black, as emoji and clip art store it
    rgba[5:15, 5:15] = (200, 0, 0, 255)
    rgba[0:5, 5:15] = (255, 0, 0, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    la = np.zeros((20, 20, 2), dtype=np.uint8)
    la[5:15, 5:15] = (60, 255)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.info["transparency"] = pal.getpixel((0, 19))  # the black corner's palette index
    pal.save(tmp_path / "pal.png", transparency=pal.info["transparency"])
    names = ["rgba.png", "la.png", "pal.png"]
    dm = KarpathyCaptions(json_path=str(karpathy_json(tmp_path, [kimage(n, s, "a red square") for n, s in
                                                                  zip(names, ("train", "val", "test"))])),
                          image_dir=str(tmp_path), image_size=20)
    dm.setup()
    pixels = {s: (dm.splits[s].store[0].permute(1, 2, 0).numpy() * 255).round() for s in ("train", "val", "test")}
    for s, px in pixels.items():
        assert (px[19, 0] == 255).all(), (s, px[19, 0])  # a transparent corner is white
    assert tuple(pixels["train"][10, 10]) == (200, 0, 0) and tuple(pixels["val"][10, 10]) == (60, 60, 60)
    assert abs(pixels["train"][2, 10] - (255, 127, 127)).max() <= 2  # half red over white
    assert tuple(pixels["test"][10, 10]) != (255, 255, 255)  # the opaque square stays
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")  # an opaque image is as it was
    assert read_image(tmp_path / "rgb.png", 20)[19, 0].tolist() == [0, 0, 0]


def test_karpathy_bad_input_is_an_error_or_a_counted_skip(tmp_path):
    write_images(tmp_path / "im", ["ok.jpg", "ok2.jpg", "ok3.jpg"])
    (tmp_path / "im" / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    images = [kimage("ok.jpg", "train", "a cat", ""), kimage("missing.jpg", "train", "a dog"),
              kimage("corrupt.jpg", "train", "a cow"),
              kimage("ok2.jpg", "val", "a cat " * 40), kimage("ok2.jpg", "val", "a cat"),
              kimage("ok3.jpg", "test", "a cat")]
    path = karpathy_json(tmp_path, images)
    with pytest.raises(DataError, match=r"ok.jpg, caption 1: empty caption.*data.on_bad=skip"):
        KarpathyCaptions(json_path=str(path), image_dir=str(tmp_path / "im")).setup()
    dm = KarpathyCaptions(json_path=str(path), image_dir=str(tmp_path / "im"), on_bad="skip", max_len=10)
    dm.setup()
    assert dm.bad.counts == {"empty captions": 1, "unreadable images": 2, "captions longer than data.max_len": 1,
                          "images without captions": 1}
    assert len(dm.splits["train"].names) == 1 and len(dm.splits["val"].names) == 1
    for bad, message in [("missing.jpg", "file not found"), ("corrupt.jpg", "not a readable image")]:
        path = karpathy_json(tmp_path, [kimage(bad, "train", "a dog"), kimage("ok.jpg", "val", "a cat"),
                                        kimage("ok.jpg", "test", "a cat")])
        with pytest.raises(DataError, match=f"{bad}: {message}"):
            KarpathyCaptions(json_path=str(path), image_dir=str(tmp_path / "im")).setup()


def short_png(png: bytes) -> bytes:
    """A PNG whose image data ends halfway but whose chunks are all whole, CRCs right (what a writer
    that stopped mid-image and closed the file leaves): PIL's verify() passes it, decoding fails."""
    out, i, done = png[:8], 8, False
    while i + 8 <= len(png):
        n = struct.unpack(">I", png[i:i + 4])[0]
        kind, data = png[i + 4:i + 8], png[i + 8:i + 8 + n]
        i += 12 + n
        if kind == b"IDAT":
            if done:
                continue
            data, done = data[: len(data) // 2], True
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return out


def test_karpathy_truncated_images_are_caught_before_training(tmp_path):
    """verify() passes a truncated JPEG and a PNG whose data ends early; the up-front check decodes,
    so they are an error naming the file, or a counted skip - not a DataError mid-epoch."""
    folder = tmp_path / "im"
    write_images(folder, ["ok.png", "ok.jpg", "cut.jpg", "cut.png"], size=(64, 48))
    jpg = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    (folder / "cut.png").write_bytes(short_png((folder / "cut.png").read_bytes()))
    for name in ("cut.jpg", "cut.png"):
        with Image.open(folder / name) as im:
            im.verify()  # what the check used to be: it passes both
    rest = [kimage("ok.jpg", "val", "a cat"), kimage("ok.png", "test", "a cat")]
    for bad in ("cut.jpg", "cut.png"):
        path = karpathy_json(tmp_path, [kimage("ok.png", "train", "a dog"), kimage(bad, "train", "a cow"), *rest])
        with pytest.raises(DataError, match=rf"image {bad}: not a readable image .*truncated"):
            KarpathyCaptions(json_path=str(path), image_dir=str(folder)).setup()
    path = karpathy_json(tmp_path, [kimage("ok.png", "train", "a dog"), kimage("cut.jpg", "train", "a cow"),
                                    kimage("cut.png", "train", "a pig"), *rest])
    dm = KarpathyCaptions(json_path=str(path), image_dir=str(folder), image_size=24, on_bad="skip")
    dm.setup()
    assert dm.bad.counts == {"unreadable images": 2} and dm.splits["train"].names == ["ok.png"]
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:  # every image left in decodes
            assert batch["images"].shape[1:] == (3, 24, 24)


def test_karpathy_missing_or_malformed_json(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        KarpathyCaptions(json_path=str(tmp_path / "nope.json"), image_dir=str(tmp_path)).setup()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        KarpathyCaptions(json_path=str(tmp_path / "bad.json"), image_dir=str(tmp_path)).setup()
    (tmp_path / "odd.json").write_text(json.dumps({"images": [{"file": "x"}]}))
    with pytest.raises(DataError, match=r"images\[0\] lacks"):
        KarpathyCaptions(json_path=str(tmp_path / "odd.json"), image_dir=str(tmp_path)).setup()


@pytest.mark.parametrize("as_list", [False, True])
def test_hf_imagefolder_with_metadata_jsonl(tmp_path, as_list):
    folder = tmp_path / "set"
    names = [f"p{i}.png" for i in range(20)]
    write_images(folder / "train", names)
    with open(folder / "train" / "metadata.jsonl", "w") as f:
        for i, n in enumerate(names):  # one caption as a string, or several as a list
            caps = [f"a photo {i}", f"picture number {i}"] if as_list else f"a photo {i}"
            f.write(json.dumps({"file_name": n, "caption": caps}) + "\n")
    dm = HFCaptions(name="imagefolder", data_dir=str(folder), image_size=16, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    sizes = [len(dm.splits[s].names) for s in ("train", "val", "test")]
    assert sizes == [12, 4, 4]
    all_refs = [r for s in dm.splits.values() for r in s.refs]
    assert all(len(r) == (2 if as_list else 1) for r in all_refs)
    b = next(iter(dm.train_dataloader()))
    assert b["images"].shape[1:] == (3, 16, 16)


def test_hf_rows_sharing_an_image_become_one_image_with_several_references(tmp_path):
    """Hub sets with one caption per row (several rows per image) are grouped by image."""
    import datasets

    write_images(tmp_path / "im", ["a.png", "b.png"])
    rows = {"image": [str(tmp_path / "im" / n) for n in ["a.png", "a.png", "b.png"] * 4],
            "caption": ["one a", "two a", "one b"] * 4}
    ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "train.parquet"))
    ds.to_parquet(str(tmp_path / "validation.parquet"))
    ds.to_parquet(str(tmp_path / "test.parquet"))
    dm = HFCaptions(name="parquet", data_dir=str(tmp_path), image_size=8)
    dm.setup()
    refs = dm.splits["val"].refs
    assert len(refs) == 2 and sorted(len(r) for r in refs) == [4, 8]


def test_hf_local_folder_problems_name_the_folder(tmp_path):
    folder = tmp_path / "mixed" / "train"
    write_images(folder, ["a.png", "b.png"])
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "caption": ["x", "y"]}) + "\n"
                                           + json.dumps({"file_name": "b.png", "caption": "z"}) + "\n")
    with pytest.raises(DataError, match="Check the files"):
        HFCaptions(name="imagefolder", data_dir=str(tmp_path / "mixed")).setup()


def test_hf_hub_name_offline_fails_fast_and_clearly():
    t = time.monotonic()
    with pytest.raises(DataError, match="Offline, a hub set must already be in the cache"):
        HFCaptions(name="some-user/no-such-captions").setup()
    assert time.monotonic() - t < 30


def test_photos_are_decoded_at_the_size_the_encoder_asks_for(tmp_path):
    """data.image_size=null (karpathy, hf_captions): the scratch CNN asks for its input_size (64),
    a pretrained encoder for its weights' resize side (256 for a 224 crop; 224 with recipe=resize);
    a size set on the command line wins; an encoder that asks for none is refused before data is read.
    The run records the settled size, and zoo.evaluate on another data config reads at that size."""
    from conftest import QUIET, compose, run_module

    from zoo.errors import ConfigError
    from zoo.run.checks import check
    from zoo.run.train import train

    names = [f"e{i}.png" for i in range(12)]
    write_images(tmp_path / "images", names, size=(100, 100))
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    images = [kimage(n, split, f"a thing number {i % 3}") for i, (n, split) in enumerate(zip(names, splits))]
    path = karpathy_json(tmp_path, images)
    data = ["task=captioning", "data=karpathy", f"data.json_path={path}", f"data.image_dir={tmp_path / 'images'}",
            "data.min_count=1", "data.num_workers=0"]

    def settled(*overrides):
        cfg, choices = compose(*data, *overrides, choices=True)
        check(cfg, choices)
        return cfg.data.image_size

    assert settled() == 64 and settled("encoder.input_size=48") == 48 and settled("data.image_size=100") == 100
    assert settled("encoder=efficientnet_lite0") == 256 and settled("encoder=resnet18", "encoder.input_size=112") == 128
    assert settled("encoder=resnet18", "encoder.recipe=resize") == 224
    with pytest.raises(ConfigError, match=r"data.image_size=null takes the size the encoder asks for.*set data.image_size=N"):
        settled("encoder.input_size=null")

    run = tmp_path / "run"
    train(compose(*data, "encoder.channels=[4]", "encoder.fc=[8]", "cell.hidden_size=8", "head.embed_dim=8",
                  "trainer.max_epochs=1", *QUIET), run_dir=run, name="t")  # not checked first: train settles it too
    assert json.loads((run / "data_spec.json").read_text())["image_shape"] == [3, 64, 64]
    assert "image_size: 64" in (run / "config.yaml").read_text()
    code, out, err = run_module("zoo.evaluate", [str(run), "data=karpathy", f"data.json_path={path}",
                                                 f"data.image_dir={tmp_path / 'images'}", "data.min_count=1"])
    assert code == 0, err[-2000:]
    assert 0 <= json.loads(out.splitlines()[-1])["test/bleu4"] <= 1
