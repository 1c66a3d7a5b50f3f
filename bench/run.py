"""Run every benchmark and print each against its baseline measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    # Imported here, not at the top: the curation bench's Prefect workers are spawned processes that
    # re-import this module, and must not pay for torch.
    import curation
    import train_step

    print(curation.table(curation.main()))
    r = train_step.main()
    print(
        f"training step (Stage II shapes): {r['training_step_s'] * 1000:.0f} ms, bare UNet fwd+bwd "
        f"{r['bare_unet_s'] * 1000:.0f} ms -> overhead ratio {r['ratio']:.2f}x"
    )


if __name__ == "__main__":
    main()
