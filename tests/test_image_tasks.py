"""The lecture's last pictures: a one-to-one classifier, a model that classifies by glimpses it
chooses, and DRAW, which draws an image one piece at a time; their parts and their pictures."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, check_metrics, compose, run_zoo
from hydra.utils import instantiate
from PIL import Image

from zoo.encoders.filterbank import GaussianFilterbank
from zoo.encoders.glimpse import RetinaEncoder
from zoo.run.checks import check
from zoo.run.train import build_task, train


def test_the_retina_sees_where_it_looks_and_reads_a_fixed_number_of_pixels():
    img = torch.zeros(1, 1, 60, 60)
    img[0, 0, 10:14, 46:50] = 1.0  # a bright 4x4 square, centred at (x, y) = (48, 12)
    retina = RetinaEncoder((1, 60, 60), size=4, scales=3, ratio=2)
    at = torch.tensor([[(48 / 60) * 2 - 1, (12 / 60) * 2 - 1]])
    seen = retina.sense(img, at)  # (1, 3, 4, 4): sharp, coarser, coarsest
    assert seen.shape == (1, 3, 4, 4)
    assert seen[0, 0].mean() > 0.9  # the sharp patch is the square
    assert 0.2 < seen[0, 1].mean() < 0.4 and seen[0, 2].mean() < seen[0, 1].mean()  # wider patches, averaged
    assert retina.sense(img, torch.tensor([[-0.8, 0.8]])).abs().max() == 0  # elsewhere: nothing
    assert retina.sense(img, torch.tensor([[1.5, 1.5]])).abs().max() == 0  # off the image: zeros, no error
    # the same glimpse of a bigger image costs the same: the network's input does not grow
    big = RetinaEncoder((1, 100, 100), size=4, scales=3, ratio=2)
    assert big.sense(torch.rand(2, 1, 100, 100), torch.zeros(2, 2)).shape == (2, 3, 4, 4)
    assert sum(p.numel() for p in big.parameters()) == sum(p.numel() for p in retina.parameters())
    box = retina.box(at)[0]
    assert abs(box[0] - 47.5) < 1 and abs(box[1] - 11.5) < 1 and box[2] == 16


def test_a_filterbank_reads_the_patch_its_parameters_say_and_writes_it_back():
    bank = GaussianFilterbank(12, 24, 24)
    x = torch.zeros(2, 1, 24, 24)
    x[0, 0, 2:8, 2:8] = 1.0  # top left
    x[1, 0, 16:22, 16:22] = 1.0  # bottom right
    # a 12x12 grid, stride 0.5 pixel: top left vs bottom right, sharp filters
    left = torch.tensor([[-0.58, -0.58, -2.0, np.log(0.5 * 11 / 23), 0.0]] * 2)
    right = torch.tensor([[0.58, 0.58, -2.0, np.log(0.5 * 11 / 23), 0.0]] * 2)
    seen_left, seen_right = bank.read(x, left), bank.read(x, right)
    assert seen_left.shape == (2, 1, 12, 12)
    assert seen_left[0].mean() > 0.8 and seen_left[1].mean() < 0.05  # reads what is there, only there
    assert seen_right[1].mean() > 0.8 and seen_right[0].mean() < 0.05
    written = bank.write(seen_left, left)
    assert written[0, 0, 2:8, 2:8].mean() > 5 * written[0, 0, 12:, 12:].mean()  # written back where it was read
    params = torch.zeros(1, 5, requires_grad=True)  # and every part of it has a gradient
    bank.read(torch.rand(1, 1, 24, 24), params).sum().backward()
    assert params.grad[0, :4].abs().min() > 0


@pytest.mark.parametrize("variant", [[], ["encoder=filterbank", "encoder.size=4"], ["task.policy=random"]],
                         ids=["retina", "filterbank", "random-policy"])
def test_glimpse_runs_and_draws_its_glimpse_paths(tmp_path, variant):
    cfg, choices = compose("task=glimpse", *TINY["glimpse"], *variant, "trainer.max_epochs=1", choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path, name="glimpse")
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()), {"test/acc", "test/loss"})
    with Image.open(tmp_path / "samples.png") as sheet:  # a row per test image, a panel per glimpse
        assert sheet.width >= 2 * 180 and sheet.height >= 8 * 180
    import zoo

    model = zoo.load(tmp_path)
    path = tmp_path / "digit.png"
    Image.fromarray((np.random.rand(60, 60) * 255).astype(np.uint8)).save(path)
    out = model.predict_inputs([str(path)])[0]
    assert out["label"] in model.spec.labels and len(out["glimpses"]) == 2  # and where it looked


def test_the_location_policy_learns_by_reinforce_and_the_classifier_by_backprop_apart():
    """Where to look gets the policy gradient only; what to answer the classification gradient only."""
    cfg = compose("task=glimpse", *TINY["glimpse"])
    dm = instantiate(cfg.data)
    dm.setup()
    torch.manual_seed(0)
    task = build_task(cfg, dm.spec).train()
    task.log = task.log_dict = lambda *a, **k: None
    task._trainer = None
    batch = dm.collate(dm.data["val"][:8])
    run = task.look(batch["images"])
    logits = task.head(run.outputs)
    torch.nn.functional.cross_entropy(logits, batch["labels"]).backward(retain_graph=True)
    assert task.W_l.weight.grad is None or task.W_l.weight.grad.abs().max() == 0  # the answer does not move the policy
    assert task.head.W_hy[-1].weight.grad.abs().max() > 0
    task.zero_grad()
    (-run.trace["logp"].sum()).backward()
    assert task.W_l.weight.grad.abs().max() > 0  # the policy term does
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in task.head.parameters())


def test_a_task_refuses_a_part_it_is_not_built_from():
    for task, part in (("imageclass", "cell=gru"), ("draw", "encoder=cnn")):
        out = run_zoo(f"task={task}", part, "trainer.max_epochs=0")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert f"task={task} has no {part.split('=')[0]} (it is built from" in out.stderr


@pytest.mark.parametrize("variant", [[], ["task.attention=false"], ["task.attention=false", "task.steps=1"]],
                         ids=["attention", "whole-image", "vae"])
def test_draw_runs_and_draws_one_piece_at_a_time(tmp_path, variant):
    cfg, choices = compose("task=draw", *TINY["draw"], *variant, "trainer.max_epochs=1", choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path, name="draw")
    m = check_metrics(json.loads((tmp_path / "metrics.json").read_text()), {"test/nll", "test/recon", "test/kl"})
    assert abs(m["test/nll"] - m["test/recon"] - m["test/kl"]) < 1e-3 * m["test/nll"]  # the bound's two parts
    for name in ("samples.png", "steps_generated.png", "steps_reconstructed.png", "generated.gif"):
        assert (tmp_path / name).is_file(), name
    with Image.open(tmp_path / "generated.gif") as gif:
        assert gif.n_frames >= cfg.task.steps  # a frame per step


def test_draw_builds_its_canvas_from_its_writes_and_its_bound_from_its_parts():
    cfg = compose("task=draw", *TINY["draw"], "task.steps=3")
    dm = instantiate(cfg.data)
    dm.setup()
    torch.manual_seed(0)
    task = build_task(cfg, dm.spec).eval()
    images = dm.collate(dm.data["val"][:4])["images"]
    out = task(images)
    assert out["canvases"].shape == (4, 3, 1, 28, 28)
    steps = torch.sigmoid(out["canvases"])
    assert not torch.allclose(steps[:, 0], steps[:, -1])  # the canvas changes step by step
    generated = task.generate(5, seed=1)
    assert generated.shape == (5, 3, 1, 28, 28) and torch.equal(generated, task.generate(5, seed=1))
    assert (out["kl"] >= 0).all() and (out["recon"] > 0).all()
    assert torch.equal(task.binarise(images), task.binarise(images))  # evaluation: one fixed binarisation


def test_imageclass_is_one_to_one():
    cfg = compose("task=imageclass", *TINY["imageclass"])
    dm = instantiate(cfg.data)
    dm.setup()
    task = build_task(cfg, dm.spec)
    assert not any("recurrence" in n for n, _ in task.named_modules())
    assert task(torch.rand(3, 1, 60, 60)).shape == (3, 10)


@pytest.mark.parametrize("task", ["glimpse", "draw"])  # imageclass reads the same batches
def test_the_image_tasks_read_a_folder_per_class(tmp_path, task):
    """data=image_folder: DIR/<class>/*.png, val and test cut from it, for every image task."""
    rng = np.random.default_rng(0)
    for cls in ("three", "seven"):
        (tmp_path / "digits" / cls).mkdir(parents=True)
        for k in range(10):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / "digits" / cls / f"{k}.png")
    overrides = [o for o in TINY[task] if not o.startswith("data.")]
    cfg, choices = compose(f"task={task}", *overrides, "data=image_folder", f"data.data_dir={tmp_path / 'digits'}",
                           "data.val_fraction=0.2", "data.test_fraction=0.2", "data.batch_size=4",
                           "trainer.fast_dev_run=true", choices=True)
    check(cfg, choices)
    train(cfg, run_dir=tmp_path / "run", name=task)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert check_metrics(metrics, {"test/nll"} if task == "draw" else {"test/acc"})
    if task == "glimpse":  # train/loss is the cross-entropy (>= 0); the REINFORCE hybrid is train/objective
        assert "train/objective" in metrics and metrics["train/loss"] >= 0
    spec = json.loads((tmp_path / "run" / "data_spec.json").read_text())
    assert spec["image_shape"] == [1, 20, 20] and (task == "draw" or sorted(spec["labels"]) == ["seven", "three"])
