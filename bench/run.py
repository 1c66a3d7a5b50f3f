"""Run every benchmark and print each against its baseline measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    # Imported here, not at the top: the curation bench's Prefect workers are spawned processes that
    # re-import this module, and must not pay for torch.
    import curation
    import learned_gpu
    import train

    print(curation.table(curation.main()))
    print("\n".join(learned_gpu.main()))
    print(train.main())


if __name__ == "__main__":
    main()
