"""One loop, three stages: on a fixed seed each stage's validation loss (fixed sigmas, fixed noise,
held-out clips) falls, and each writes a checkpoint the next stage starts from. End to end: it trains
all three stages on the smoke profile (about a minute), so it lives here rather than in tests/unit."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from svd.data.clips import load_subset
from svd.model import components
from svd.train.loop import fill_latents, train_stage
from svd.train.resume import read_point

SHORT = {"image": 20, "video": 10, "finetune": 8}


def test_three_stages_learn_and_chain(tiny_params):
    """Stage I encodes its frames as it trains; the video stages read their latent store."""
    # the smoke profile's denoiser steps halved, enough for each validation loss to fall; Stage I's
    # autoencoder keeps its 60 steps, at which the guard below was measured
    short = {s: getattr(tiny_params.train, s).model_copy(update={"steps": n}) for s, n in SHORT.items()}
    p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update=short)})
    results = {}
    for stage in ("image", "video", "finetune"):
        if stage != "image":
            filled = fill_latents(p, stage, p.filter.out, p.curate.out)
            assert filled["train_computed"] > 0 and filled["val_computed"] > 0, filled
            again = fill_latents(p, stage, p.filter.out, p.curate.out)
            assert again["train_computed"] == again["val_computed"] == 0, again
        r = train_stage(p, stage, p.filter.out, p.curate.out)
        results[stage] = r
        assert r.val_loss_after < r.val_loss_before, r
        assert json.loads((Path(r.out) / "training.json").read_text())["result"]["stage"] == stage
    assert results["image"].autoencoder_loss is not None and results["image"].scaling_factor != 1.0
    image = components.load(p.train.image.out)
    assert not image.is_video
    # SVD's decoder is temporal: decoding 8 frames at once must not break the picture. A guard, not a
    # measure of temporal learning: after 60 steps, 8-frame and 1-frame autoencoder training both give
    # joint errors 1.26-1.38x the frame-by-frame one (measured), a broken temporal path far more.
    x = load_subset(p.filter.out, p.curate.out, "lvd", "val", 6, 8, (32, 32)).fixed(2).frames.flatten(0, 1)
    with torch.no_grad():
        z = image.vae.encode(x).latent_dist.mode()
        err = {n: float(((image.vae.decode(z, num_frames=n).sample - x) ** 2).mean()) for n in (1, 8)}
    assert err[8] < 1.6 * err[1], err
    video = components.load(p.train.video.out)
    # the paper's chain: text-to-image, a text-to-video base model, an image-to-video finetune
    assert image.text_encoder is not None and video.is_video and not video.is_image_to_video
    finetune = components.load(p.train.finetune.out)
    assert (
        finetune.is_image_to_video
        and finetune.unet.config.in_channels == 2 * finetune.vae.config.latent_channels
    )
    # Stage II fixed the motion-bucket map from its own clips; Stage III kept it
    assert video.motion is not None and video.motion.clips == results["video"].train_clips
    assert finetune.motion == video.motion
    assert finetune.unet.config.sample_size == p.train.finetune.resolution[0] // 2  # higher resolution


RUN_STAGE = """
import sys
from svd.params import Params
from svd.train.loop import train_stage
p = Params.model_validate_json(open(sys.argv[1]).read())
train_stage(p, "image", p.filter.out, p.curate.out)
"""


def test_a_killed_stage_resumes_to_the_same_weights(tiny_params, tmp_path):
    """SIGKILL in the autoencoder phase, again in each of two denoiser phases (a time-embedding
    warm-up, then all weights), then a run to the end: the saved networks are byte-identical to an
    uninterrupted run's, and no resume point is left.
    Every run is a fresh process with the same environment, as a relaunched job would be (torch's
    thread count changes float sums, so it must be the same, as it is for one job)."""
    import signal
    import subprocess
    import sys
    import time

    from svd.params import PhaseParams

    def run_stage(out: Path) -> subprocess.Popen:
        image = tiny_params.train.image.model_copy(
            update={
                "out": out,
                "autoencoder_steps": 12,
                "checkpoint_every": 4,
                "phases": [PhaseParams(trainable="time_embedding", steps=8), PhaseParams(steps=8)],
            }
        )
        p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"image": image})})
        (tmp_path / f"{out.name}.json").write_text(p.model_dump_json())
        return subprocess.Popen([sys.executable, "-c", RUN_STAGE, str(tmp_path / f"{out.name}.json")])

    assert run_stage(tmp_path / "whole").wait() == 0
    point = tmp_path / "killed.resume"
    for phase in ("autoencoder", "denoiser", "denoiser1"):
        run = run_stage(tmp_path / "killed")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            state = point.exists() and read_point(point)
            if state and state["phase"] == phase:
                run.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        assert run.wait() == -signal.SIGKILL, f"the run ended before a {phase} resume point"
    assert read_point(point)["phase"] == "denoiser1"
    assert run_stage(tmp_path / "killed").wait() == 0  # goes on from the last phase's point
    assert not point.exists()
    # every file of the stage's output, the networks and training.json (less its own path) alike:
    # DVC sees the same output whether or not the run was killed
    files = sorted(f.relative_to(tmp_path / "whole") for f in (tmp_path / "whole").rglob("*") if f.is_file())
    assert files == sorted(
        f.relative_to(tmp_path / "killed") for f in (tmp_path / "killed").rglob("*") if f.is_file()
    )
    assert Path("unet/diffusion_pytorch_model.safetensors") in files
    for f in files:
        a, b = (tmp_path / "whole" / f).read_bytes(), (tmp_path / "killed" / f).read_bytes()
        if f.name == "training.json":
            a = a.replace(str(tmp_path / "whole").encode(), str(tmp_path / "killed").encode())
        assert a == b, f


RUN_STAGE_LOSSES = """
import json, os, sys
import torch
from svd.params import Params
from svd.train.loop import train_stage
from svd.train.record import Silent
from svd.train.resume import read_point

class Points(Silent):  # what each resume point holds of the UNet: name, type and shape of each tensor
    def checkpoint(self, name, path, step):
        unet = read_point(path)["unet"]
        shapes = sorted((k, type(v).__name__, list(v.shape)) for k, v in unet.items())
        open(sys.argv[1] + f".{step}.point", "w").write(json.dumps(shapes))

p = Params.model_validate_json(open(sys.argv[1]).read())
r = train_stage(p, "image", p.filter.out, p.curate.out, Points())
open(sys.argv[1] + f".{os.environ.get('RANK', '0')}.losses", "w").write(json.dumps(r.losses))
"""


def stage_params(tiny_params, out: Path, parallel: str = "ddp") -> Path:
    """A params file for the ranks test: Stage I, 12 autoencoder and 16 denoiser steps, resume
    points and EMA on, trained into `out`."""
    image = tiny_params.train.image.model_copy(
        update={
            "out": out,
            "autoencoder_steps": 12,
            "steps": 16,
            "batch_size": 8,
            "autoencoder_batch_size": 4,
            "ema_decay": 0.9,
            "checkpoint_every": 5,
        }
    )
    compute = tiny_params.train.compute.model_copy(update={"parallel": parallel})
    train = tiny_params.train.model_copy(update={"image": image, "compute": compute})
    path = out.parent / f"{out.name}.json"
    path.write_text(tiny_params.model_copy(update={"train": train}).model_dump_json())
    return path


@pytest.fixture(scope="module")
def one_process(tiny_params, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single process both parallel modes are held to, trained once: with one process
    train.compute.parallel changes nothing."""
    import subprocess

    one = stage_params(tiny_params, tmp_path_factory.mktemp("ranks") / "one")
    subprocess.run([sys.executable, "-c", RUN_STAGE_LOSSES, str(one)], check=True)
    return one


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_under_torchrun_take_the_one_process_steps(tmp_path, tiny_params, one_process, parallel):
    """torchrun, 2 CPU ranks on gloo, each half of the global batch, the denoiser replicated (DDP)
    or sharded (FSDP2), with EMA and resume points written mid-stage: the losses and the weights of a
    single process on the whole batch, up to float summation order. Stated tolerance after 12
    autoencoder and 16 denoiser steps: every logged loss within 1e-4 relative; the weights within
    5e-4 in relative L2 norm, fewer than 1% of them off by over 1e-5 (Adam turns a sign flip of a
    near-zero gradient into a full step of lr, so a few weights differ by up to lr per step)."""
    import json
    import subprocess

    from safetensors.torch import load_file

    one, two = one_process, stage_params(tiny_params, tmp_path / "two", parallel)
    script = tmp_path / "stage.py"
    script.write_text(RUN_STAGE_LOSSES)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    subprocess.run([*torchrun, str(script), str(two)], check=True, timeout=600)

    # a resume point holds the whole UNet as plain tensors, however it is spread over the ranks
    assert Path(f"{two}.5.point").read_text() == Path(f"{one}.5.point").read_text()
    losses = {
        k: json.loads(Path(f"{f}.{r}.losses").read_text())
        for k, f, r in [("one", one, 0), ("r0", two, 0), ("r1", two, 1)]
    }
    assert losses["r0"] == losses["r1"]  # every rank logs the global batch's loss
    torch.testing.assert_close(torch.tensor(losses["r0"]), torch.tensor(losses["one"]), rtol=1e-4, atol=0)
    assert not (tmp_path / "two.resume").exists() and (tmp_path / "two" / "training.json").exists()
    for net in ("unet", "vae"):
        a = load_file(one.with_suffix("") / net / "diffusion_pytorch_model.safetensors")
        b = load_file(tmp_path / "two" / net / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys()
        diff = torch.cat([(a[k] - b[k]).flatten() for k in a])
        norm = torch.cat([a[k].flatten() for k in a])
        assert float(diff.norm() / norm.norm()) < 5e-4, net  # measured: 3e-5 (UNet), 7e-5 (VAE)
        assert float((diff.abs() > 1e-5).float().mean()) < 0.01, net  # measured: 0.2%, 0.05%


def test_speed_levers_keep_the_numbers(tiny_params, tmp_path):
    """train.compute on CPU: gradient checkpointing recomputes exactly; eager attention and NHWC
    convolutions round differently (stated: 1e-5); bf16 autocast within 1e-2; cuda without a GPU is a
    clear error. (torch.compile has a test of its own, below.)"""
    import pytest

    def run(stage: str, **lever) -> list[float]:
        compute = tiny_params.train.compute.model_copy(update=lever)
        stages = {
            "image": tiny_params.train.image.model_copy(
                update={"out": tmp_path / "image", "autoencoder_steps": 2, "steps": 6}
            ),
            "video": tiny_params.train.video.model_copy(
                update={"out": tmp_path / "video", "init": tmp_path / "image", "steps": 4}
            ),
        }
        p = tiny_params.model_copy(
            update={"train": tiny_params.train.model_copy(update={"compute": compute, **stages})}
        )
        if stage == "video":
            fill_latents(p, stage, p.filter.out, p.curate.out)  # a no-op once the first run filled it
        return train_stage(p, stage, p.filter.out, p.curate.out).losses  # type: ignore[arg-type]

    base = {s: run(s) for s in ("image", "video")}
    assert {s: run(s, gradient_checkpointing=True) for s in ("image", "video")} == base
    for lever, tol in [({"attention": "eager", "channels_last": True}, 1e-5), ({"precision": "bf16"}, 1e-2)]:
        got = run("image", **lever)
        assert max(abs(a - b) for a, b in zip(got, base["image"], strict=True)) < tol, lever
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            run("image", device="cuda")


def test_compile_traces_each_layer_whole_and_keeps_the_gradients(monkeypatch):
    """train.compute.compile compiles each resnet and attention layer on its own: every layer traces
    as one graph (a graph break would split the fusion), layers of one shape share their graph, and
    checkpointing on top gives the eager gradients. Dynamo only (backend "eager"): inductor's code
    generation for the tiny UNet took 205 s on this 2-core CPU (its gradients were within 4e-8); on a
    GPU bench/train.py times it at the `svd` preset's size."""
    import functools

    from svd.params import ComputeParams
    from svd.train import compute

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "model"))
    from test_checkpointing import saved_bytes_and_grads, unet_and_inputs

    unet, x, cond = unet_and_inputs()
    _, ref = saved_bytes_and_grads(unet, x, cond)
    keys = set(unet.state_dict())
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    compute.speed_up_layers(unet, ComputeParams(gradient_checkpointing=True, compile=True))
    _, grads = saved_bytes_and_grads(unet, x, cond)
    assert set(unet.state_dict()) == keys
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["frames"]["ok"] == counters["frames"]["total"] > 0
    assert counters["stats"]["unique_graphs"] < len(compute.layers(unet)) == 18
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_a_stage_runs_its_phases_in_order(tiny_params, tmp_path):
    """Stage I as the paper's table: a time-embedding-only warm-up, then all weights at a non-square
    resolution with its own noise schedule and lr. The warm-up moves nothing but the embedding; the
    phases' steps add up; the model comes out sized for the last phase."""
    from svd.params import PhaseParams

    def run(*phases: PhaseParams, out: str) -> tuple:
        image = tiny_params.train.image.model_copy(
            update={"out": tmp_path / out, "autoencoder_steps": 0, "phases": list(phases)}
        )
        p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"image": image})})
        return train_stage(p, "image", p.filter.out, p.curate.out), components.load(tmp_path / out)

    warm_up = PhaseParams(trainable="time_embedding", steps=3, lr=1e-3)
    wide = PhaseParams(resolution=(32, 48), steps=4, p_mean=-1.0, p_std=1.2)
    r, model = run(warm_up, out="warm")
    torch.manual_seed(tiny_params.seed)  # train_stage builds its random start from the seed
    start = components.build(tiny_params.model.arch, 32).unet.state_dict()
    moved = {k for k, v in model.unet.state_dict().items() if not torch.equal(v, start[k])}
    assert moved and all(k.startswith("time_embedding.") for k in moved), moved
    assert len(r.losses) == r.steps == 3

    r, model = run(warm_up, wide, out="both")
    assert len(r.losses) == r.steps == 7 and r.val_loss_after < r.val_loss_before
    assert model.unet.config.sample_size == 16  # the last phase's 32 rows at the tiny VAE's 2x


def test_a_finetune_starts_from_an_svd_folder(tiny_params, tmp_path):
    """Finetuning a released SVD / SVD-XT checkpoint: a diffusers StableVideoDiffusionPipeline folder
    (no motion-bucket map of ours) as Stage III's init. The stage defines the map from its clips, and
    what it saves is again a folder diffusers' pipeline loads."""
    from diffusers import StableVideoDiffusionPipeline

    from svd.model.inflate import inflate

    torch.manual_seed(0)
    released = components.build(tiny_params.model.arch, 32)
    released.unet = inflate(released.unet, tiny_params.model.arch.unet.addition_time_embed_dim, 8)
    components.save(released, tmp_path / "svd-xt")
    assert not (tmp_path / "svd-xt" / "motion_buckets.json").exists()
    finetune = tiny_params.train.finetune.model_copy(
        update={"init": tmp_path / "svd-xt", "out": tmp_path / "tuned", "steps": 3, "latents": None}
    )
    p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"finetune": finetune})})
    r = train_stage(p, "finetune", p.filter.out, p.curate.out)
    tuned = components.load(tmp_path / "tuned")
    assert tuned.motion is not None and tuned.motion.clips == r.train_clips
    assert isinstance(
        StableVideoDiffusionPipeline.from_pretrained(tmp_path / "tuned"), StableVideoDiffusionPipeline
    )


def test_the_papers_text_then_image_chain_from_an_sd21_folder(tiny_params, tmp_path):
    """Paper Sec. 4: Stage I text-to-image from SD 2.1 (time-embedding warm-up, then all weights),
    Stage II a text-to-video base model with 15% of captions dropped, reading its latents and caption
    embeddings from the store, Stage III finetuned from it to image-to-video. What comes out is a
    folder diffusers' SVD pipeline runs, although SD 2.1's autoencoder has no temporal decoder."""
    import PIL.Image
    from diffusers import StableVideoDiffusionPipeline

    from svd.generate import text_to_video
    from svd.params import PhaseParams

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "model"))
    from test_text import sd21_folder

    sd21 = sd21_folder(tmp_path / "sd21")
    store = str(tmp_path / "latents")
    t = tiny_params.train
    stages = {
        "image": t.image.model_copy(
            update={
                "out": tmp_path / "image",
                "condition": "text",
                "autoencoder_steps": 0,
                "phases": [PhaseParams(trainable="time_embedding", steps=3), PhaseParams(steps=6)],
            }
        ),
        "video": t.video.model_copy(
            update={
                "out": tmp_path / "video",
                "init": tmp_path / "image",
                "condition": "text",
                "steps": 8,
                "latents": store,
                "sample_every": 8,
            }
        ),
        "finetune": t.finetune.model_copy(
            update={"out": tmp_path / "finetune", "init": tmp_path / "video", "steps": 6, "latents": store}
        ),
    }
    p = tiny_params.model_copy(
        update={
            "model": tiny_params.model.model_copy(update={"pretrained": str(sd21)}),
            "train": t.model_copy(update=stages),
        }
    )
    results = {}
    for stage in ("image", "video", "finetune"):
        if stage != "image":
            filled = fill_latents(p, stage, p.filter.out, p.curate.out)
            assert filled["train_computed"] > 0, filled
        results[stage] = r = train_stage(p, stage, p.filter.out, p.curate.out)
        assert all(map(math.isfinite, r.losses)) and len(r.losses) == r.steps, r
    image, video, finetune = (components.load(tmp_path / s) for s in ("image", "video", "finetune"))
    assert not image.is_video and image.image_encoder is None and image.text_encoder is not None
    assert video.is_video and not video.is_image_to_video  # text-to-video: no concatenated frame
    assert finetune.is_image_to_video and finetune.image_encoder is not None
    # the text stages' caption embeddings came from the store, one entry per caption
    assert len(list((tmp_path / "latents").glob("v1-text-*/*.safetensors"))) > 3
    # the base model samples from a caption; the finetune is a diffusers SVD folder
    frames = text_to_video(video, "a red circle drifting slowly", 4, 6, 127, steps=2)
    assert frames.shape == (4, 32, 32, 3)
    pipe = StableVideoDiffusionPipeline.from_pretrained(tmp_path / "finetune")
    out = pipe(
        PIL.Image.fromarray(frames[0]),
        height=48,
        width=48,
        num_frames=4,
        num_inference_steps=2,
        decode_chunk_size=4,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    assert out.shape == (4, 48, 48, 3)


def test_the_train_flow_runs_a_stage_under_torchrun(tiny_params, tmp_path, prefect_server):
    """What a GPU pool's deployment runs: the train flow with `processes` 2 starts torchrun (two CPU
    ranks on gloo here); rank 0 records the stage's MLflow run, tagged with the flow run, and the
    flow run completes with the stage's result."""
    import os
    import subprocess

    import mlflow
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    image = tiny_params.train.image.model_copy(
        update={"out": tmp_path / "image", "autoencoder_steps": 4, "steps": 6, "batch_size": 4}
    )
    p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"image": image})})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json")))
    env = {**os.environ, **prefect_server.env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "flows", "train", "--stage", "image", "--processes", "2"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert "rank 1 of 2 joined the gloo process group" in r.stderr + r.stdout
    assert json.loads((tmp_path / "image" / "training.json").read_text())["result"]["steps"] == 6

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:
        (run,) = [f for f in c.read_flow_runs() if f.parameters.get("processes") == 2]
        (bar,) = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["train-image-progress"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            )
        )
    assert run.state is not None and run.state.is_completed()
    assert float(bar.data) == 100.0  # type: ignore[arg-type]  # rank 0's steps, moved on the run's page
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (logged,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert logged.info.run_name == "train-image" and logged.data.tags["prefect.flow_run_id"] == str(run.id)
    assert logged.data.tags["mlflow.source.name"] == "flows/train.py"
    losses = mlflow.MlflowClient().get_metric_history(logged.info.run_id, "train_image/loss")
    assert len(losses) == 6
