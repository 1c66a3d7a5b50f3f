"""Scene transitions: precision / recall / F1 on the default synthetic corpus and on the shared real
videos (../shared/media against tests/data/media_cuts.json), without and with TransNetV2 in the
cascade, and the detector's cost per frame at detection size, against decoding and scaling those
frames in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from svd.curation import cutscore
from svd.curation.scenes import SceneDetector, detection_size
from svd.media.io import iter_frames, probe
from svd.media.synth import make_corpus
from svd.params import CutParams, SynthParams

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def per_frame(video: Path, p: CutParams) -> tuple[float, float, tuple[int, int]]:
    """(detector ms / frame, decode-and-scale ms / frame, detection size) of one video."""
    info = probe(video)
    size = detection_size(info.width, info.height, p)
    t0 = time.perf_counter()
    frames = list(iter_frames(video, size=size))
    decode = time.perf_counter() - t0
    det = SceneDetector(info.fps, p)
    t0 = time.perf_counter()
    for f in frames:
        det.push(f)
    det.finish()
    return (time.perf_counter() - t0) / len(frames) * 1e3, decode / len(frames) * 1e3, size


def main() -> None:
    setups = {"": CutParams(), ", + TransNetV2": CutParams(learned=True)}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(SynthParams(out=Path(tmp)), seed=0)
        truth = cutscore.load_truth(corpus / "ground_truth.json")
        media = cutscore.load_truth(cutscore.MEDIA_TRUTH, MEDIA)
        for name, p in setups.items():
            print(cutscore.table(f"synthetic (default, seed 0){name}", cutscore.score_videos(truth, p)))
            print(cutscore.table(f"shared media{name}", cutscore.score_videos(media, p)))
        synth_video = next(iter(truth))
        print("detector cost per frame, one thread (decode + scale to detection size, same run):")
        for video in (synth_video, MEDIA / "testvideo.mp4", MEDIA / "issue-134-rotate.mp4"):
            for name, p in setups.items():
                detect_ms, decode_ms, (h, w) = per_frame(video, p)
                print(
                    f"  {video.name:22s} {w}x{h}: detect{name or ''} {detect_ms:.3f} ms,"
                    f" decode + scale {decode_ms:.3f} ms"
                )


if __name__ == "__main__":
    main()
