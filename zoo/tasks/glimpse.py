"""Classify an image by a series of glimpses the model chooses (the recurrent attention model:
Mnih et al. 2014; Ba, Mnih & Kavukcuoglu 2015).

    for t = 1..T:                                        # task.glimpses
        l_t ~ N(mu(h_{t-1}), sigma^2)                    # the location network: where to look
        g_t = glimpse(x, l_t)                            # the encoder: a retina there (what + where)
        h_t = f(h_{t-1}, g_t)                            # the core RNN (any cell=)
    y = W_hy h_T                                         # the head, after the last glimpse

The glimpse enters the cell as the recurrence's extra input, computed from the previous state
(:class:`Glimpses`, a :class:`zoo.recurrence.StepInput`): the loop calls it at every step.

A retina's crops are not differentiable in where they are taken, so the location network is
trained by REINFORCE, as in the papers: the reward is 1 for a right answer, a learned baseline
``b_t = W_b h_{t-1}`` lowers the variance, and the hybrid loss is

    NLL(y) + MSE(b_t, R) + policy_weight * -sum_t log pi(l_t | h_{t-1}) (R - b_t)

The location network reads the state detached and the glimpses are taken at detached locations,
so the classifier's gradient never moves where the model looks, and the policy gradient never
moves what it classifies with (mixing them makes the policy collapse onto the first locations
the classifier fits). With ``encoder=filterbank`` (DRAW's read) where to look is differentiable
and the whole model trains by backpropagation, no policy term.

``task.policy=random``: locations uniformly at random, not learned (the ablation a learned
policy must beat).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from zoo.data.images import read_picture
from zoo.data.spec import DataSpec
from zoo.recurrence import StepInput, build
from zoo.tasks.base import Task, build_encoder
from zoo.tasks.classifying import Classifying
from zoo.tasks.sample_sheet import draw_glimpse_sheet


class Glimpses(StepInput):
    """At step t: where to look from h_{t-1}, the glimpse there, recorded with its log-probability."""

    def __init__(self, task: "GlimpseTask", images: Tensor) -> None:
        self.task, self.images = task, images

    def at(self, h_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        where, logp = self.task.locate(h_prev)
        record = {"where": where, "h_prev": h_prev} if logp is None else {"where": where, "h_prev": h_prev, "logp": logp}
        return self.task.encoder(self.images, where), record


class GlimpseTask(Classifying, Task):
    inputs = {"image": ("image", "glimpse")}
    modes = ("many_to_one",)

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None, glimpses: int = 6,
                 location_std: float = 0.15, policy_weight: float = 1.0, policy: Literal["learned", "random"] = "learned",
                 samples: int = 8) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        if glimpses < 1:
            raise ValueError(f"task.glimpses must be >= 1, got {glimpses}")
        if policy not in ("learned", "random"):
            raise ValueError(f"task.policy must be learned or random, got {policy!r}")
        self.encoder = build_encoder(encoder, spec)
        # no input but what the glimpses give: the glimpse enters the cells through their W_ih
        self.recurrence = build(cell, input_size=0, extra_size=self.encoder.out_dim)
        if self.recurrence.num_directions != 1:
            raise ValueError("glimpses are taken one after the other: set cell.bidirectional=false")
        H = self.recurrence.hidden_size
        self.head = head(input_size=H, num_classes=spec.num_classes)
        self.W_l = nn.Linear(H, self.encoder.where_size)  # the location network
        self.W_b = nn.Linear(H, 1)  # the baseline of the reward, from the same state
        self.glimpses, self.location_std, self.policy_weight, self.policy = glimpses, location_std, policy_weight, policy
        self.n_samples = samples
        self.add_label_metrics(spec.num_classes)

    @property
    def reinforced(self) -> bool:
        """Where to look is learned by REINFORCE (a retina), not by backpropagation (a filterbank)."""
        return not self.encoder.differentiable and self.policy == "learned"

    # -- the model ----------------------------------------------------------------------
    def locate(self, h_prev: Tensor) -> tuple[Tensor, Tensor | None]:
        """Where to look from the previous state (B, H): (where (B, L), its log-probability (B,) or None)."""
        if self.policy == "random":
            return torch.rand(h_prev.shape[0], self.encoder.where_size, device=h_prev.device) * 2 - 1, None
        if self.encoder.differentiable:
            return self.W_l(h_prev), None
        mean = torch.tanh(self.W_l(h_prev.detach()))  # the classifier's gradient stays out of the policy
        if not self.training:
            return mean, None
        where = (mean + self.location_std * torch.randn_like(mean)).clamp(-1, 1).detach()
        logp = torch.distributions.Normal(mean, self.location_std).log_prob(where).sum(1)
        return where, logp

    def look(self, images: Tensor):
        """images (B, C, H, W) -> the recurrence run over the glimpses (outputs (B, T, H), trace)."""
        B = images.shape[0]
        nothing = images.new_zeros(B, self.glimpses, 0)  # T steps with no input of their own
        return self.recurrence(nothing, extra=Glimpses(self, images))

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> logits (B, C), after the last glimpse."""
        return self.head(self.look(images).outputs)

    # -- steps ------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        run = self.look(batch["images"])
        logits = self.head(run.outputs)
        loss = ce = self.label_loss("train", logits, batch["labels"])
        if self.reinforced:
            reward = (logits.argmax(-1) == batch["labels"]).float().unsqueeze(1)  # (B, 1): 1 for a right answer
            baseline = self.W_b(run.trace["h_prev"].detach()).squeeze(2)  # (B, T): from the state that chose l_t
            advantage = (reward - baseline).detach()
            policy = -(run.trace["logp"] * advantage).sum(1).mean()
            baseline_loss = nn.functional.mse_loss(baseline, reward.expand_as(baseline))
            loss = loss + baseline_loss + self.policy_weight * policy
            self.log_dict({"train/reward": reward.mean(), "train/baseline_mse": baseline_loss})
        loss = self.check_finite(loss)
        # train/loss is the classification loss, as val/loss and test/loss are; the hybrid
        # objective (with the policy surrogate, which can be negative) is train/objective
        self.log("train/loss", ce, prog_bar=True)
        if self.reinforced:
            self.log("train/objective", loss)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.label_loss("val", self(batch["images"]), batch["labels"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.label_loss("test", self(batch["images"]), batch["labels"])

    # -- use ----------------------------------------------------------------------------------
    @torch.no_grad()
    def path(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Where the model looks: boxes (B, T, 4) in pixels (centre x, centre y, width, height), and logits."""
        run = self.look(images)
        where = run.trace["where"]  # (B, T, L)
        boxes = self.encoder.box(where.flatten(0, 1)).view(*where.shape[:2], 4)
        return boxes, self.head(run.outputs)

    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """An image file -> its label, and where the model looked."""
        boxes, logits = self.path(read_picture(raw, self.spec.image_shape).unsqueeze(0).to(self.device))
        return {**self.label_of(logits[0]), "glimpses": [[round(float(v), 1) for v in b] for b in boxes[0]]}

    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """samples.png: test images with the glimpse path drawn on them, step by step, and the answer."""
        split = datamodule.data["test"][: self.n_samples]
        if not split:
            return []
        batch = datamodule.collate(split)
        was = self.training
        self.eval()
        boxes, logits = self.path(batch["images"].to(self.device))
        self.train(was)
        labels = self.spec.labels
        path = run_dir / "samples.png"
        draw_glimpse_sheet(list(batch["images"]), boxes.cpu(), [labels[k] for k in logits.argmax(-1).tolist()],
                           [labels[k] for k in batch["labels"].tolist()], path)
        return [path]

