"""`svd ...`: the library without an orchestrator. The Prefect flows (python -m flows ...) call the
same functions in svd.steps; these commands are for a shell, a notebook or a debugger."""

from __future__ import annotations

import argparse
import atexit
import base64
import gc
import json
import logging
import sys
from functools import partial
from pathlib import Path

from svd import params


def cmd_step(args: argparse.Namespace) -> None:
    p = params.load(args.params)
    match args.command:
        case "synth":
            from svd.steps.synth import synth

            print(synth(p))
        case "curate":
            from svd.steps.curate import curate

            print(curate(p))
        case "filter":
            from svd.steps.filter import filter

            print(json.dumps(filter(p)["clips"]))
        case "latents":
            from svd.steps.latents import latents

            print(latents(p, args.stage))
        case "train":
            from svd.steps.train import train

            progress = None if args.progress is None else partial(write_progress, Path(args.progress))
            r = train(p, args.stage, dict(t.split("=", 1) for t in args.tag), progress)
            print(
                f"stage {r.stage}: final loss {r.final_loss:.4f}, val loss {r.val_loss_before:.4f} -> "
                f"{r.val_loss_after:.4f}, saved to {r.out}"
            )
        case "evaluate":
            from svd.steps.evaluate import evaluate

            print(json.dumps(evaluate(p), indent=2))
        case "register":
            from svd.steps.register import register

            print(json.dumps(register(p), indent=2))
        case "ablate":
            from svd.steps.ablate import ablate

            print(ablate(p).to_string(index=False))


def write_progress(path: Path, done: int, total: int) -> None:
    """`done total` (denoiser steps) into `path`, replaced whole, for a caller that shows progress."""
    from svd import storage

    storage.write_bytes(path, f"{done} {total}".encode())


def cmd_generate(args: argparse.Namespace) -> None:
    """Load a registered model (models:/NAME@alias) and write one image-to-video sample."""
    import mlflow
    import pandas as pd

    from svd import tracking

    tracking.connect()
    model = mlflow.pyfunc.load_model(args.model)
    row = {
        "image": base64.b64encode(Path(args.image).read_bytes()).decode(),
        "frames": args.frames,
        "fps": args.fps,
        "motion_bucket": args.motion_bucket,
        **({} if args.motion_score is None else {"motion_score": args.motion_score}),
        **({} if args.height is None else {"height": args.height, "width": args.width}),
        "steps": args.steps,
        "seed": args.seed,
    }
    video = model.predict(pd.DataFrame([row]))["video"][0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(base64.b64decode(video))
    print(f"wrote {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    """What the last pipeline run produced, read from the stage outputs on disk."""
    from svd import tracking

    p = params.load(args.params)

    def read(path: Path) -> dict:
        return json.loads(path.read_text()) if path.exists() else {}

    print("Clips per subset:")
    for name, s in read(p.filter.out / "summary.json").items():
        print(
            f"  {name:8s} {s['clips']:4d} clips ({s['train']} train / {s['val']} held out), "
            f"{s['hours'] * 60:.1f} min of video"
        )
    print("Training (final loss = mean of the last tenth of the steps):")
    for stage in params.STAGES:
        r = read(p.stage(stage).out / "training.json").get("result")
        if r:
            print(
                f"  {stage:9s} final loss {r['final_loss']:.4f}   val loss {r['val_loss_before']:.4f} -> "
                f"{r['val_loss_after']:.4f}   {r['steps']} steps"  # wall seconds: the stage's MLflow run
            )
    metrics = read(p.evaluate.out / "metrics.json")
    print("Evaluation:")
    for k, v in metrics.items():
        print(f"  {k:24s} {v:.4f}" if isinstance(v, float) else f"  {k:24s} {v}")
    reg = read(p.register.out)
    if reg:
        gates = "passed" if not reg["gate_failures"] else "; ".join(reg["gate_failures"])
        print(
            f"Registered: {reg['name']} version {reg['version']}, aliases {', '.join(reg['aliases'])} "
            f"(gates: {gates})"
        )
    uri = tracking.tracking_uri()
    ui = (
        f".venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
        if uri.startswith("sqlite")
        else uri
    )
    print(f"MLflow UI: {ui}")


def cmd_cuts_score(args: argparse.Namespace) -> None:
    """Precision / recall / F1 of scene transitions on a synthetic corpus (a fresh one from params.yaml's
    synth section unless --synth names a folder with ground_truth.json) and on the real videos of
    --media against --truth."""
    import tempfile

    from svd.curation import cutscore
    from svd.media.synth import make_corpus

    p = params.load(args.params)
    tolerance = args.tolerance
    # the cascade without and with TransNetV2, whatever params.yaml's cuts.learned says
    setups = {"": p.curate.cuts.model_copy(update={"learned": False})}
    setups[", + TransNetV2"] = p.curate.cuts.model_copy(update={"learned": True})
    with tempfile.TemporaryDirectory() as tmp:
        synth = Path(args.synth or make_corpus(p.synth.model_copy(update={"out": Path(tmp)}), p.seed))
        truth = cutscore.load_truth(synth / "ground_truth.json")
        for name, cuts in setups.items():
            title = f"synthetic ({args.synth or f'seed {p.seed}'}){name}"
            print(cutscore.table(title, cutscore.score_videos(truth, cuts, tolerance)))
    if not Path(args.media).is_dir():
        print(f"no folder {args.media}: real videos not scored")
        return
    truth = cutscore.load_truth(Path(args.truth or cutscore.MEDIA_TRUTH), Path(args.media))
    for name, cuts in setups.items():
        print(cutscore.table(f"media ({args.media}){name}", cutscore.score_videos(truth, cuts, tolerance)))


def cmd_model(args: argparse.Namespace) -> None:
    from svd.model import components

    m = params.load(args.params).model
    name = args.preset or m.preset
    if name not in m.presets:
        raise SystemExit(f"no preset {name!r} in {args.params}: {', '.join(m.presets)}")
    print(f"preset {name}")
    print(components.describe(m.presets[name], args.frames))


def cmd_arena(args: argparse.Namespace) -> None:
    """Serve the arena's voting page, or rank its votes and log the ranking to MLflow."""
    from svd.evaluate import arena

    a = arena.Arena(Path(args.db))
    if args.arena == "serve":
        if bad := [m for m in args.model if "=" not in m]:
            raise SystemExit(f"arena serve: --model takes NAME=DIR (a model's evaluation samples), got {bad}")
        models = dict(m.split("=", 1) for m in args.model)
        if models:
            added = a.add({name: Path(d) for name, d in models.items()}, args.seed)
            print(f"{added} new pairs of {', '.join(a.models())}")
        server = arena.serve(a, args.host, args.port)
        print(f"arena on http://{args.host}:{server.server_address[1]}/ (votes in {args.db})", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return
    for axis, rated in arena.log_results(a, args.rounds).items():
        print(f"{arena.AXES[axis]}:")
        for i, r in enumerate(rated, 1):
            print(f"  {i}. {r.model:30} Elo {r.elo:7.1f}  ({r.low:.1f} to {r.high:.1f})  {r.votes} votes")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="svd", description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("synth", "curate", "filter", "evaluate", "register", "ablate"):
        sub.add_parser(name).set_defaults(func=cmd_step)
    for name in ("latents", "train"):
        t = sub.add_parser(name)
        t.add_argument("--stage", choices=params.STAGES, required=True)
        if name == "train":
            t.add_argument("--tag", action="append", default=[], help="key=value on the stage's MLflow run")
            t.add_argument("--progress", help="a file holding 'steps-done total' (for a progress bar)")
        t.set_defaults(func=cmd_step)
    g = sub.add_parser("generate", help="image -> video with a registered model")
    g.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3, runs:/...")
    g.add_argument("--image", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--frames", type=int, default=8)
    g.add_argument("--fps", type=int, default=6)
    g.add_argument("--motion-bucket", type=int, default=127, help="0..255; 127 is the median training clip")
    g.add_argument("--motion-score", type=float, help="a curated motion score, mapped by the model (wins)")
    g.add_argument("--steps", type=int, default=25)
    g.add_argument("--height", type=int, help="pixels, with --width (default: the model's square size)")
    g.add_argument("--width", type=int)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)
    sub.add_parser("report").set_defaults(func=cmd_report)
    m = sub.add_parser("model", help="a preset's architecture and parameter counts, no weights allocated")
    m.add_argument("--preset", help="a name under model.presets (default: model.preset)")
    m.add_argument("--frames", type=int, default=14)
    m.set_defaults(func=cmd_model)
    c = sub.add_parser("cuts-score", help="precision / recall / F1 of scene transitions")
    c.add_argument("--synth", help="folder with ground_truth.json (default: a fresh synthetic corpus)")
    c.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    c.add_argument("--truth", help="ground truth of --media (default: tests/data/media_cuts.json)")
    c.add_argument("--tolerance", type=int, default=2, help="frames")
    c.set_defaults(func=cmd_cuts_score)
    a = sub.add_parser("arena", help="human preference: vote between two models' samples, Elo ranking")
    a.add_argument("--db", default="reports/arena/arena.sqlite", help="the votes")
    arena_sub = a.add_subparsers(dest="arena", required=True)
    s = arena_sub.add_parser("serve", help="the voting page")
    s.add_argument("--model", action="append", default=[], help="NAME=DIR of a model's evaluation samples")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765, help="0: any free port")
    s.add_argument("--seed", type=int, default=0, help="draws which side each model is shown on")
    r = arena_sub.add_parser("results", help="Elo per axis, logged to MLflow")
    r.add_argument("--rounds", type=int, default=1000, help="random orderings of the votes")
    a.set_defaults(func=cmd_arena)
    args = ap.parse_args(argv)
    if args.command == "generate" and (args.height is None) != (args.width is None):
        ap.error("generate: give --height and --width together")
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("svd").setLevel(logging.INFO)
    # The process ends with the command. The interpreter's last collection would walk every object
    # torch, diffusers and MLflow left (2-3 s on 2 cores, in each rank under torchrun) to free memory
    # that the OS takes back at exit anyway.
    atexit.register(gc.freeze)
    args.func(args)


if __name__ == "__main__":
    main()
