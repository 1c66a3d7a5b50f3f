"""Issue 10, point 5: `make faults`. Runs the fault tests (tests/integration/test_faults.py, against
real local servers the tests start) and prints what each fault did and what it lost.

Each test injects its fault (an outage forwarder cutting a server off mid-request, or SIGKILL),
counts the rows, objects, metric points or processes that did not come through, files a row here,
and then asserts that count is 0. The exit status is pytest's, or 1 when anything was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/integration/test_faults.py"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="svd-faults-") as tmp:
        rows_file = Path(tmp) / "faults.jsonl"
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", TESTS]
        tests = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "SVD_FAULTS_REPORT": str(rows_file)})
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    width = max([len(r["fault"]) for r in rows] + [5])
    outcome = max([len(r["outcome"]) for r in rows] + [7])
    print(f"\n{'fault':{width}}  {'outcome':{outcome}}  lost")
    for r in rows:
        print(f"{r['fault']:{width}}  {r['outcome']:{outcome}}  {r['lost']}")
    lost = sum(r["lost"] for r in rows)
    print(f"\n{len(rows)} faults, {lost} rows or objects lost (must be 0), {time.perf_counter() - t0:.0f} s")
    if tests.returncode:
        print(f"pytest exited {tests.returncode}: a fault test failed (see above); its row may be missing")
    return tests.returncode or int(lost > 0)


if __name__ == "__main__":
    sys.exit(main())
