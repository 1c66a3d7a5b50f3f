"""Run every benchmark and print each against its baseline measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import curation
import train_step


def main() -> None:
    print("curation levers (baseline -> lever, same video, same run):")
    for name, baseline, lever in curation.main():
        print(f"  {name}: {baseline:.2f} s -> {lever:.2f} s, {baseline / lever:.1f}x faster")
    r = train_step.main()
    print(
        f"training step (Stage II shapes): {r['training_step_s'] * 1000:.0f} ms, bare UNet fwd+bwd "
        f"{r['bare_unet_s'] * 1000:.0f} ms -> overhead ratio {r['ratio']:.2f}x"
    )


if __name__ == "__main__":
    main()
