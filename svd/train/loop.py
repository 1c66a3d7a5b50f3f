"""One training loop for the three stages. A stage is data and config (params.train.<stage>):

  image    : autoencoder (when not pretrained), then a 2D image denoiser on single frames
  video    : the image UNet inflated with temporal layers, trained on LVD-F clips
  finetune : the video model on the HQ subset at a higher resolution, with EMA weights saved

Each is conditioned on an image or on text (`condition`): the paper trains text-to-image, then a
text-to-video base model, then finetunes it to image-to-video; a model changes mode between stages.

The loop reads like nanoGPT's train.py: fetch a batch, forward, backward, step, log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder
from torch import Tensor, nn

from svd.data import latents
from svd.data.clips import Batch, Windows, batches, load_subset
from svd.diffusion.edm import edm_loss, sample_sigmas
from svd.generate import image_to_video, text_to_video  # side output: samples shown in MLflow
from svd.model import components
from svd.model.components import Components
from svd.model.conditioning import encode, latent_shape
from svd.model.denoiser import denoiser, prepare, validation_loss
from svd.model.inflate import add_frame_condition, inflate
from svd.model.motion import MotionBuckets
from svd.params import Params, StageName, StageParams
from svd.train import compute, distributed
from svd.train.record import Recorder, Silent
from svd.train.resume import ResumeFile, fingerprint, rng_state, set_rng_state

log = logging.getLogger("svd.train")

KL_WEIGHT = 1e-6  # as the LDM autoencoders: a nearly deterministic latent, its scale fixed afterwards
VAL_SEED = 1234


@dataclass
class StageResult:
    stage: str
    out: str
    steps: int
    train_clips: int
    val_clips: int
    parameters: int
    val_loss_before: float
    val_loss_after: float
    final_loss: float  # mean training loss over the last tenth of the steps
    autoencoder_loss: float | None
    scaling_factor: float
    seconds: float
    losses: list[float] = field(repr=False)


class EMA:
    """Exponential moving average of the weights with edm-style warm-up, so short runs are not
    dominated by the initial weights."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1 - d)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow, strict=False)

    def state(self) -> dict[str, Tensor]:
        """The whole averages, for a resume point (of a sharded network: every rank together)."""
        return {k: distributed.gather(v) for k, v in self.shadow.items()}

    def load(self, state: dict[str, Tensor]) -> None:
        self.shadow = {k: distributed.like(v, self.shadow[k]) for k, v in state.items()}


def tail_mean(losses: list[float]) -> float:
    """Mean over the last tenth of the steps: a final loss that one noisy batch cannot swing."""
    tail = losses[-max(len(losses) // 10, 1) :]
    return sum(tail) / len(tail)


def initial_components(p: Params, st: StageParams) -> Components:
    """What the stage starts from, with the encoder its `condition` needs: an image stage after a
    text one (SD 2.1 has no image encoder) takes model.image_encoder, or the preset's at random."""
    if st.init is not None:
        c = components.load(st.init)
    elif p.model.pretrained is not None:
        c = components.load(p.model.pretrained)
    else:
        c = components.build(p.model.arch, st.resolution[0])
    if st.condition == "image" and c.image_encoder is None and p.model.image_encoder:
        c.image_encoder = components.load_image_encoder(p.model.image_encoder)
    elif st.condition == "image" and c.image_encoder is None:
        with torch.random.fork_rng():  # the same random encoder for `svd latents` and the stage
            torch.manual_seed(p.seed)
            c.image_encoder = components.image_encoder(p.model.arch.image_encoder)
    if st.condition == "text" and c.text_encoder is None:
        raise ValueError(
            f"condition: text, but {st.init or p.model.pretrained} has no text encoder and tokenizer "
            "(an SVD folder has none): start the text stage from SD 2.1 or a text stage of ours"
        )
    return c


@dataclass
class Phase:
    """What optimise() needs to write resume points and to go on from one (svd.train.resume)."""

    name: str  # "autoencoder" | "denoiser"
    file: ResumeFile
    every: int
    g: torch.Generator  # the loop's generator; the point restores it and torch's global one
    snapshot: Callable[[], dict[str, Any]]  # the rest of the stage: networks, generators, earlier phases
    start: dict[str, Any] | None  # the point to go on from, when it was written in this phase


def optimise(
    module: nn.Module,
    loss_fn: Callable[[Batch], Tensor],
    data: Callable[[int], Iterator[Batch]],  # first step -> this rank's batches from there on
    steps: int,
    lr: float,
    record: Recorder,
    prefix: str,
    ema: EMA | None = None,
    phase: Phase | None = None,
    offset: int = 0,  # steps of the stage's earlier phases: EMA warm-up and the logs count on
    after_step: Callable[[int], None] | None = None,  # called on every rank with the steps done so far
) -> list[float]:
    params = [q for q in module.parameters() if q.requires_grad]
    opt = compute.optimizer(params, lr)
    first, losses = 0, []
    if phase is not None and phase.start is not None:
        distributed.load_optimizer_state(module, opt, phase.start["optimizer"])
        if ema is not None:
            ema.load(phase.start["ema"])
        first, losses = phase.start["step"], list(phase.start["losses"])
        set_rng_state(phase.g, phase.start["rng"])
    module.train()
    for step, batch in zip(range(first, steps), data(first), strict=True):
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.update(module, offset + step)
        losses.append(distributed.mean(loss))  # the global batch's loss, the same on every rank
        done = offset + step + 1  # the stage's steps behind us
        norm = float(distributed.gather(grad_norm))
        if distributed.is_main():
            record.metrics({f"{prefix}/loss": losses[-1], f"{prefix}/grad_norm": norm}, done - 1)
        if step % max(steps // 5, 1) == 0:
            log.info("%s step %d/%d loss %.4f", prefix, step, steps, losses[-1])
        if phase is not None and (step + 1) % phase.every == 0 and step + 1 < steps:
            # gathered by every rank (a sharded network's state is spread over them), written by one
            point = {"phase": phase.name, "step": step + 1, "losses": losses}
            point |= {"optimizer": distributed.optimizer_state(module, opt), "ema": ema and ema.state()}
            state = phase.snapshot() | point
            if distributed.is_main():
                phase.file.save(state)
                record.checkpoint(f"{prefix}-{phase.name}-step{done}", phase.file.path, done)
        if after_step is not None:
            module.eval()
            after_step(done)
            module.train()
    module.eval()
    return losses


class AutoencoderLoss(nn.Module):
    """The autoencoder's training loss as one forward, so DDP can wrap its step: reconstruction of
    windows decoded F frames at a time, plus a small KL."""

    def __init__(self, vae: components.VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, noise: Tensor, frames: int) -> Tensor:
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * noise  # a posterior sample, as latent_dist.sample()
        # SD 2.1's AutoencoderKL decodes frame by frame; SVD's temporal decoder, the window at once
        temporal = isinstance(self.vae, AutoencoderKLTemporalDecoder)
        recon = self.vae.decode(z, **({"num_frames": frames} if temporal else {})).sample
        return F.mse_loss(recon, x) + KL_WEIGHT * posterior.kl().mean()


def fit_autoencoder(
    c: Components,
    data: Windows,
    p: Params,
    st: StageParams,
    g: torch.Generator,
    record: Recorder,
    phase: Phase,
) -> float:
    """Reconstruction + small KL on windows of consecutive frames, then the latent scaling factor
    set to 1/std as LDM did for SD. SVD's decoder has temporal layers: trained on single frames they
    would learn nothing about time and corrupt every multi-frame decode."""
    dev, bs = next(c.vae.parameters()).device, st.autoencoder_batch_size
    step_loss = distributed.wrap(AutoencoderLoss(c.vae), find_unused=True)
    mine = distributed.part(bs)

    def loss_fn(batch: Batch) -> Tensor:
        x = batch.frames.to(dev)  # this rank's windows of the step's global batch
        frames = x.shape[1]
        noise = torch.randn(latent_shape(c.vae, (bs * frames, *x.shape[2:])), generator=g)
        rows = slice(mine.start * frames, mine.stop * frames)
        with compute.autocast(p.train.compute, dev):
            return step_loss(x.flatten(0, 1), noise[rows].to(dev), frames)

    def steps_from(first: int) -> Iterator[Batch]:
        tag = f"{phase.name}/{phase.name}"
        return batches(data, p.seed, tag, first, st.autoencoder_steps, bs, mine, p.train.compute.data_workers)

    losses = optimise(
        c.vae,
        loss_fn,
        steps_from,
        st.autoencoder_steps,
        st.autoencoder_lr,
        record,
        "autoencoder",
        phase=phase,
    )
    with torch.no_grad():
        c.vae.register_to_config(scaling_factor=1.0)
        x = data.fixed(min(len(data), 16)).frames.flatten(0, 1)
        z = encode(c.vae, x.to(dev), torch.randn(latent_shape(c.vae, x.shape), generator=g).to(dev))
        c.vae.register_to_config(scaling_factor=float(1 / z.std()))
    return tail_mean(losses)


def seeded_components(p: Params, st: StageParams) -> Components:
    """initial_components as train_stage builds them right after seeding: a stage that starts from
    no folder gets the same random weights here, and the caller's random state is left alone."""
    with torch.random.fork_rng():
        torch.manual_seed(p.seed)
        return initial_components(p, st)


def fill_latents(p: Params, name: StageName, subsets_dir: Path, curated_dir: str | Path) -> dict[str, int]:
    """Fill the stage's latent store for the train clips of each phase and the val clips of the last,
    with the encoders the stage starts from."""
    st = p.stage(name)
    if st.latents is None:
        raise ValueError(f"train.{name}.latents is not set: the stage encodes its clips as it trains")
    c = seeded_components(p, st)
    compute.prepare_networks(c, p.train.compute)
    schedule = st.schedule()
    counts = {"train_computed": 0, "train_present": 0}
    text = st.condition == "text"  # a text stage also stores its captions' embeddings
    for ph in schedule:
        w = load_subset(subsets_dir, curated_dir, ph.subset, "train", ph.fps, ph.frames, ph.resolution)
        computed, present = latents.fill(w, c, st.latents, text)
        counts["train_computed"] += computed
        counts["train_present"] += present
    last = schedule[-1]
    w = load_subset(subsets_dir, curated_dir, last.subset, "val", last.fps, last.frames, last.resolution)
    counts["val_computed"], counts["val_present"] = latents.fill(w, c, st.latents, text)
    return counts


def trainable(unet: nn.Module, which: str) -> None:
    """Stage I's warm-up trains the timestep embedding alone: SD 2.1 learnt DDPM's discrete
    timesteps, and EDM's c_noise = ln(sigma) / 4 asks a new embedding of it first."""
    for n, q in unet.named_parameters():
        q.requires_grad_(which == "all" or n.startswith("time_embedding."))


def train_stage(
    p: Params,
    name: StageName,
    subsets_dir: Path,
    curated_dir: str | Path,
    record: Recorder | None = None,
    progress: Callable[[int, int], None] | None = None,  # (denoiser steps done, of all), on rank 0
) -> StageResult:
    record = record or Silent()
    st = p.stage(name)
    schedule = st.schedule()
    first, last = schedule[0], schedule[-1]
    t0 = time.time()
    torch.manual_seed(p.seed)
    g = torch.Generator().manual_seed(p.seed)

    # 1. Data: the subset at each phase's fps, frames and resolution, streamed; validation on the
    # held-out clips at the last phase's, so before and after compare the same thing
    def subset(ph: StageParams, split: str) -> Windows:
        return load_subset(subsets_dir, curated_dir, ph.subset, split, ph.fps, ph.frames, ph.resolution)

    train, val = subset(first, "train"), subset(last, "val")
    log.info("stage %s: %d train / %d val samples from %s", name, len(train), len(val), st.subset)

    # 2. Model: previous stage, pretrained weights or tiny; inflated when a 2D UNet meets video
    c = initial_components(p, st)
    if first.frames > 1 and not c.is_video:
        c.unet = inflate(
            c.unet, p.model.arch.unet.addition_time_embed_dim, first.frames, st.condition == "image"
        )
    if c.is_video and st.condition == "image" and not c.is_image_to_video:
        c.unet = add_frame_condition(c.unet)  # the text-to-video base model, finetuned to image-to-video
    if c.is_image_to_video and st.condition == "text":
        raise ValueError(f"train.{name}: condition text, but {st.init} is an image-to-video model")
    if c.is_video and c.motion is None:  # the first video stage fixes what a motion bucket means
        c.motion = MotionBuckets.from_scores(train.motion)
    latent_hw = last.resolution[0] // components.downscale(c.vae.config.block_out_channels)
    c.unet.register_to_config(sample_size=latent_hw)

    # A resume point of this very run (same params, same clips) puts back where it was killed
    resume = ResumeFile(
        Path(f"{st.out}.resume"),
        fingerprint(
            stage=name,
            params=st.model_dump(mode="json", exclude={"checkpoint_every"}),
            model=p.model.model_dump(mode="json"),
            conditioning=p.conditioning.model_dump(mode="json"),
            seed=p.seed,
            clips=train.keys,
        ),
    )
    saved = resume.load()
    if saved is not None:
        c.vae.load_state_dict(saved["vae"])
        c.unet.load_state_dict(saved["unet"])
        c.vae.register_to_config(scaling_factor=saved["scaling_factor"])
    dev = compute.prepare_networks(c, p.train.compute)

    order = ["autoencoder"] + [f"denoiser{k}" if k else "denoiser" for k in range(len(schedule))]

    def finished(kind: str) -> bool:
        """Done before the kill: the resume point is of a later phase, and holds its results."""
        return saved is not None and order.index(saved["phase"]) > order.index(kind)

    def phase(kind: str, ph: StageParams, **done: Any) -> Phase:
        def snapshot() -> dict[str, Any]:
            return {
                "vae": c.vae.state_dict(),
                "unet": distributed.full_state(c.unet),
                "scaling_factor": float(c.vae.config.scaling_factor),
                "rng": rng_state(g),
                **done,
            }

        start = saved if saved is not None and saved["phase"] == kind else None
        return Phase(kind, resume, ph.checkpoint_every, g, snapshot, start)

    # 3. Autoencoder, when the stage has autoencoder_steps; frozen from here on, like the image encoder
    ae_loss = None
    if finished("autoencoder"):
        ae_loss = saved["autoencoder_loss"]  # type: ignore[index]  # its weights are back already
    elif st.autoencoder_steps:
        windows = load_subset(
            subsets_dir, curated_dir, st.subset, "train", st.fps, st.autoencoder_frames, first.resolution
        )
        ae_loss = fit_autoencoder(c, windows, p, st, g, record, phase("autoencoder", st))
    for frozen in (c.vae, c.image_encoder, c.text_encoder):
        if frozen is not None:
            frozen.requires_grad_(False).eval()
    encoders = latents.encoders_hash(c) if st.latents is not None else ""
    text = latents.text_hash(c) if st.latents is not None and st.condition == "text" else None

    def stored(w: Windows) -> Windows:
        """The frozen encoders' work, done once (svd.data.latents), when the stage reads a store."""
        return w if st.latents is None else latents.LatentWindows(w, st.latents, encoders, text)

    # 4. Denoiser, phase by phase; one EMA over all of them, and one step count for the logs
    if p.train.compute.parallel == "fsdp" and distributed.world()[1] > 1:
        if any(ph.trainable != "all" for ph in schedule):
            raise ValueError(
                f"train.{name}: a phase that trains part of the UNet is not supported under fsdp"
            )
        distributed.shard(c.unet, compute.blocks(c.unet))
    d = denoiser(c)
    val = stored(val)
    val_batch = val.fixed(max(last.batch_size, 4))
    if saved is not None and "val_before" in saved:  # the weights are the point's now, not the start's
        before = saved["val_before"]
    else:
        before = validation_loss(c, val_batch, p.conditioning, p.evaluate.sigmas, VAL_SEED, st.condition)
    ema = EMA(c.unet, st.ema_decay) if st.ema_decay else None

    def sample(step: int) -> None:
        """A video from the first val clip's first frame (or caption) with the weights of this step,
        as a user would sample it (svd.generate): the run shows how motion emerges, not only a loss."""
        if not (st.sample_every and step % st.sample_every == 0 and c.is_video):
            return
        if not (distributed.is_main() or distributed.sharded(c.unet)):
            return  # a sharded network samples on every rank: each holds a part of every weight
        e = p.evaluate
        args = (last.frames, last.fps, 127, e.steps, e.guidance, VAL_SEED)
        if st.condition == "text":
            video = text_to_video(c, val_batch.captions[0], *args, size=last.resolution)
        else:
            first = ((val_batch.frames[0, 0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
            video = image_to_video(c, first.to(torch.uint8).cpu().numpy(), *args, size=last.resolution)
        if distributed.is_main():
            record.video(f"samples/{name}-step{step:06d}.mp4", video, last.fps, step)

    total = sum(ph.steps for ph in schedule)

    def after_step(step: int) -> None:
        sample(step)
        if progress is not None and distributed.is_main():
            progress(step, total)

    losses: list[float] = []
    for k, (kind, ph) in enumerate(zip(order[1:], schedule, strict=True)):
        if finished(kind):
            continue
        if saved is not None and saved["phase"] == kind:
            losses = list(saved["losses_before"])  # the phases done before the kill
        data = stored(train if k == 0 else subset(ph, "train"))
        trainable(c.unet, ph.trainable)
        step_d = d if distributed.sharded(c.unet) else distributed.wrap(d)
        mine = distributed.part(ph.batch_size)

        def loss_fn(
            batch: Batch, ph: StageParams = ph, step_d: nn.Module = step_d, mine: slice = mine
        ) -> Tensor:
            batch = batch.to(dev)  # this rank's part of the step's global batch
            with compute.autocast(p.train.compute, dev):
                x0, cond = prepare(
                    c, batch, p.conditioning, ph.cond_drop, g, mine, ph.batch_size, condition=st.condition
                )
                sigma = sample_sigmas(ph.batch_size, ph.p_mean, ph.p_std, g)[mine].to(dev)
                noise = torch.randn((ph.batch_size, *x0.shape[1:]), generator=g)[mine].to(dev)
                return edm_loss(step_d, x0, sigma, noise, **cond).mean()

        def steps_from(
            first_step: int, data: Windows = data, ph: StageParams = ph, kind: str = kind, mine: slice = mine
        ) -> Iterator[Batch]:
            workers = p.train.compute.data_workers
            return batches(data, p.seed, f"{name}/{kind}", first_step, ph.steps, ph.batch_size, mine, workers)

        resumable = phase(kind, ph, autoencoder_loss=ae_loss, losses_before=list(losses), val_before=before)
        losses += optimise(
            c.unet,
            loss_fn,
            steps_from,
            ph.steps,
            ph.lr,
            record,
            f"train_{name}",
            ema,
            resumable,
            len(losses),
            after_step,
        )
    trainable(c.unet, "all")
    if ema is not None:
        ema.copy_to(c.unet)  # the EMA weights are the stage's output
    after = validation_loss(c, val_batch, p.conditioning, p.evaluate.sigmas, VAL_SEED, st.condition)
    c.unet = distributed.unsharded(c.unet)  # the whole weights, for saving

    # 5. Save: a diffusers folder plus the resolved config, as edm's training_options.json
    if distributed.is_main():
        components.save(c, st.out)
        resume.clear()
    result = StageResult(
        stage=name,
        out=str(st.out),
        steps=sum(ph.steps for ph in schedule),
        train_clips=len(train),
        val_clips=len(val),
        parameters=components.count_parameters(c.unet),
        val_loss_before=sum(before.values()) / len(before),
        val_loss_after=sum(after.values()) / len(after),
        final_loss=tail_mean(losses),
        autoencoder_loss=ae_loss,
        scaling_factor=float(c.vae.config.scaling_factor),
        seconds=time.time() - t0,
        losses=losses,
    )
    if distributed.is_main():
        # no wall seconds (MLflow has them): the same inputs must give the same bytes, or DVC re-runs
        # everything downstream of a stage that computed nothing new
        summary = {k: v for k, v in asdict(result).items() if k not in ("losses", "seconds")}
        (Path(st.out) / "training.json").write_text(
            json.dumps({"stage": st.model_dump(mode="json"), "result": summary}, indent=2)
        )
    return result
