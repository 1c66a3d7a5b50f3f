"""`python -m flows <flow> [...]`: the entry point dvc.yaml's stages and `make demo` call."""

from __future__ import annotations

import argparse
import logging
import os


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows")
    ap.add_argument("flow", choices=["pipeline", "curate", "latents", "train", "evaluate", "register"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=["image", "video", "finetune"], default="image")
    ap.add_argument("--steps", nargs="+", choices=["synth", "annotate", "filter"])
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "svd")  # library logs show in the Prefect UI
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")  # WARNING for libraries (httpx, ...)
    logging.getLogger("svd").setLevel(logging.INFO)

    from flows import curate, evaluate, latents, pipeline, register, train

    match args.flow:
        case "pipeline":
            pipeline.pipeline(args.params)
        case "curate":
            curate.curate(args.params, args.steps or ["synth", "annotate", "filter"])
        case "latents":
            latents.latents(args.stage, args.params)
        case "train":
            train.train(args.stage, args.params)
        case "evaluate":
            evaluate.evaluate(args.params)
        case "register":
            register.register(args.params)


if __name__ == "__main__":
    main()
