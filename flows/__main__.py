"""`python -m flows <flow> [...]`: the entry point dvc.yaml's stages and `make demo` call."""

from __future__ import annotations

import argparse
import logging
import os


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows")
    steps = ["pipeline", "synth", "curate", "filter", "latents", "train", "evaluate", "register"]
    ap.add_argument("flow", choices=steps)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=["image", "video", "finetune"], default="image")
    ap.add_argument("--processes", type=int, default=1, help="train: processes under torchrun, one per GPU")
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "svd")  # library logs show in the Prefect UI
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")  # WARNING for libraries (httpx, ...)
    logging.getLogger("svd").setLevel(logging.INFO)

    from flows import curate, evaluate, filter, latents, pipeline, register, synth, train

    match args.flow:
        case "pipeline":
            pipeline.pipeline(params_path=args.params)
        case "synth":
            synth.synth(params_path=args.params)
        case "curate":
            curate.curate(params_path=args.params)
        case "filter":
            filter.filter(params_path=args.params)
        case "latents":
            latents.latents(args.stage, params_path=args.params)
        case "train":
            train.train(args.stage, processes=args.processes, params_path=args.params)
        case "evaluate":
            evaluate.evaluate(params_path=args.params)
        case "register":
            register.register(params_path=args.params)


if __name__ == "__main__":
    main()
