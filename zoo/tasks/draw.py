"""DRAW: generate an image one piece at a time (Gregor et al. 2015), a variational auto-encoder
whose encoder and decoder are RNNs (any ``cell=``) run for ``task.steps`` steps.

    for t = 1..T:
        x^_t  = x - sigmoid(c_{t-1})                      # what is still missing
        r_t   = read(x, x^_t, h^dec_{t-1})                # where the decoder's state says
        h^enc_t = RNN_enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
        z_t  ~ Q(z_t | h^enc_t) = N(mu_t, sigma_t)        # reparameterised
        h^dec_t = RNN_dec(h^dec_{t-1}, z_t)
        c_t   = c_{t-1} + write(h^dec_t)                  # a piece added to the canvas
    image = sigmoid(c_T)

``task.attention=true``: read and write through N x N Gaussian filterbanks (the paper's
attention, :mod:`zoo.encoders.filterbank`); false: the whole image. ``task.steps=1`` without
attention is a plain VAE. Loss: the negative ELBO in nats per image, ``recon`` (Bernoulli
cross-entropy of the pixels) + ``kl`` (sum over steps of KL(Q(z_t) || N(0, I))), reported as
``nll``; images are binarised: training afresh at every batch (each pixel 1 with probability
its intensity: dynamic binarisation), evaluation once with fixed random thresholds (the same
draw at every evaluation, so val/test NLL compare across epochs and runs).

The decoder is the recurrence; what enters it at step t, z_t, comes from the encoder, which
reads the decoder's previous state: so the encoder RNN steps inside the decoder's loop, as the
loop's extra input (:class:`Posterior`, a :class:`zoo.recurrence.StepInput`); generating, the
prior gives z_t instead (:class:`Prior`). Both keep the canvas.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from zoo.data.spec import DataSpec
from zoo.encoders.filterbank import GaussianFilterbank
from zoo.recurrence import StepInput, build
from zoo.tasks.base import EVAL_SPLITS, Task
from zoo.tasks.sample_sheet import draw_canvas_sheet, draw_image_grid, save_canvas_gif


class _Drawing(StepInput):
    """The canvas c_{t-1} as the steps go, from the decoder's writes: recorded at every step."""

    def __init__(self, task: "DRAWTask", batch_size: int, device) -> None:
        self.task = task
        self.canvas = torch.zeros(batch_size, *task.spec.image_shape, device=device)  # c_0 = 0
        self.started = False

    def _advance(self, h_dec_prev: Tensor) -> None:
        if self.started:  # c_{t-1} = c_{t-2} + write(h^dec_{t-1})
            self.canvas = self.canvas + self.task.write(h_dec_prev)
        self.started = True


class Posterior(_Drawing):
    """z_t from the encoder RNN, which reads the image and the error image where h^dec_{t-1} says."""

    def __init__(self, task: "DRAWTask", images: Tensor) -> None:
        super().__init__(task, images.shape[0], images.device)
        self.images = images
        self.enc_state = task.encoder_rnn.init_state(images.shape[0], device=images.device, dtype=images.dtype)

    def at(self, h_dec_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._advance(h_dec_prev)
        error = self.images - torch.sigmoid(self.canvas)
        r = self.task.read(self.images, error, h_dec_prev)
        h_enc, self.enc_state, _ = self.task.encoder_rnn.step(torch.cat([r, h_dec_prev], 1), self.enc_state)
        mu, logvar = self.task.W_mu(h_enc), self.task.W_logvar(h_enc)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return z, {"mu": mu, "logvar": logvar, "canvas": self.canvas}


class Prior(_Drawing):
    """z_t ~ N(0, I): generating."""

    def __init__(self, task: "DRAWTask", batch_size: int, device, generator: torch.Generator | None = None) -> None:
        super().__init__(task, batch_size, device)
        self.batch_size, self.generator = batch_size, generator

    def at(self, h_dec_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._advance(h_dec_prev)
        z = torch.randn(self.batch_size, self.task.z_size, device=h_dec_prev.device, generator=self.generator)
        return z, {"canvas": self.canvas}


class DRAWTask(Task):
    inputs = {"image": ("image", "canvas")}
    modes = ()
    parts = ("cell",)  # the read and the write are DRAW's own (task.attention); the encoder and decoder RNNs are cells

    def __init__(self, *, cell: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None,
                 steps: int = 16, attention: bool = True, read_size: int = 2, write_size: int = 5,
                 z_size: int = 32, samples: int = 16) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        if steps < 1 or z_size < 1:
            raise ValueError(f"task.steps and task.z_size must be >= 1, got {steps}, {z_size}")
        c, h, w = spec.image_shape
        self.steps, self.attention, self.z_size, self.n_samples = steps, attention, z_size, samples
        if attention:
            self.read_bank, self.write_bank = GaussianFilterbank(read_size, h, w), GaussianFilterbank(write_size, h, w)
            read_dim, write_dim = 2 * c * read_size ** 2, c * write_size ** 2
        else:
            read_dim, write_dim = 2 * c * h * w, c * h * w
        self.decoder_rnn = build(cell, input_size=0, extra_size=z_size)  # the loop: z_t enters through W_ih
        H = self.decoder_rnn.hidden_size
        self.encoder_rnn = build(cell, input_size=read_dim + H)  # stepped inside the decoder's loop
        if self.decoder_rnn.num_directions != 1:
            raise ValueError("DRAW draws step after step: set cell.bidirectional=false")
        He = self.encoder_rnn.hidden_size
        self.W_mu, self.W_logvar = nn.Linear(He, z_size), nn.Linear(He, z_size)
        self.W_write = nn.Linear(H, write_dim)
        if attention:  # where to read and write: five filterbank parameters each, from h^dec
            self.W_read_at, self.W_write_at = nn.Linear(H, 5), nn.Linear(H, 5)
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {"nll": MeanMetric(), "recon": MeanMetric(), "kl": MeanMetric()})
        # evaluation binarises with fixed random thresholds: the same draw at every evaluation
        self.register_buffer("thresholds", torch.rand(spec.image_shape, generator=torch.Generator().manual_seed(0)),
                             persistent=False)

    # -- read and write -------------------------------------------------------------------
    def read(self, images: Tensor, error: Tensor, h_dec: Tensor) -> Tensor:
        """(B, 2 * C * N^2) with attention, else the two whole images (B, 2 * C * H * W)."""
        if not self.attention:
            return torch.cat([images.flatten(1), error.flatten(1)], 1)
        at = self.W_read_at(h_dec)
        return torch.cat([self.read_bank.read(images, at).flatten(1), self.read_bank.read(error, at).flatten(1)], 1)

    def write(self, h_dec: Tensor) -> Tensor:
        """h^dec (B, H) -> what it adds to the canvas (B, C, H, W)."""
        c, h, w = self.spec.image_shape
        patch = self.W_write(h_dec)
        if not self.attention:
            return patch.view(-1, c, h, w)
        N = self.write_bank.N
        return self.write_bank.write(patch.view(-1, c, N, N), self.W_write_at(h_dec))

    # -- the model ----------------------------------------------------------------------------
    def draw(self, drawing: _Drawing, batch_size: int, device) -> tuple[Tensor, Tensor, dict]:
        """Run the decoder for T steps with z_t from ``drawing``: the final canvas' logits
        (B, C, H, W), the canvases after every step (B, T, C, H, W), the loop's trace."""
        run = self.decoder_rnn(torch.zeros(batch_size, self.steps, 0, device=device), extra=drawing)
        final = drawing.canvas + self.write(run.outputs[:, -1])  # c_T = c_{T-1} + write(h^dec_T)
        canvases = torch.cat([run.trace["canvas"][:, 1:], final.unsqueeze(1)], 1)  # c_1 .. c_T
        return final, canvases, run.trace

    def binarise(self, images: Tensor) -> Tensor:
        if self.training:
            return torch.bernoulli(images)
        return (images > self.thresholds).to(images.dtype)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images (B, C, H, W) in [0, 1] -> nats per image: nll = recon + kl (each (B,)), and the canvases."""
        x = self.binarise(images)
        logits, canvases, trace = self.draw(Posterior(self, x), x.shape[0], x.device)
        recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        mu, logvar = trace["mu"], trace["logvar"]  # (B, T, Z)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum((1, 2))
        return {"nll": recon + kl, "recon": recon, "kl": kl, "canvases": canvases, "binary": x}

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0) -> Tensor:
        """n images drawn from the prior: the canvases after every step, (n, T, C, H, W) in [0, 1]."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        _, canvases, _ = self.draw(Prior(self, n, self.device, g), n, self.device)
        return torch.sigmoid(canvases)

    # -- steps ------------------------------------------------------------------------------
    def _step(self, split: str, batch: dict) -> Tensor:
        out = self(batch["images"])
        m = self.split_metrics(split)
        n = out["nll"].shape[0]
        for key in ("nll", "recon", "kl"):
            m[key].update(out[key].mean().detach(), weight=n)
        return out["nll"].mean()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._step("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step("test", batch)

    def derived_metrics(self, split: str, values: dict[str, Tensor]) -> dict[str, Tensor]:
        c, h, w = self.spec.image_shape  # bits per pixel beside nats per image
        return {f"{split}/bits_per_pixel": values[f"{split}/nll"] / (c * h * w * math.log(2))}

    # -- pictures -------------------------------------------------------------------------------
    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """samples.png: images drawn from the prior; steps_generated.png / steps_reconstructed.png:
        the canvas after every step, for generated and for test images (the test image first);
        generated.gif: the drawing, step by step."""
        was = self.training
        self.eval()
        generated = self.generate(self.n_samples).cpu()  # (n, T, C, H, W)
        test = datamodule.collate(datamodule.data["test"][: min(8, self.n_samples)])["images"].to(self.device)
        with torch.no_grad():
            out = self(test)
        rebuilt = torch.cat([out["binary"].unsqueeze(1), torch.sigmoid(out["canvases"])], 1).cpu()
        self.train(was)
        every = max(1, self.steps // 8)
        paths = {"samples": run_dir / "samples.png", "generated": run_dir / "steps_generated.png",
                 "reconstructed": run_dir / "steps_reconstructed.png", "gif": run_dir / "generated.gif"}
        draw_image_grid([g[-1] for g in generated], paths["samples"])
        draw_canvas_sheet(generated[:8], paths["generated"], every=every)
        draw_canvas_sheet(rebuilt, paths["reconstructed"], every=every)
        save_canvas_gif(generated, paths["gif"])
        return list(paths.values())
