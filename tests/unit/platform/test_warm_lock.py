"""The rules by which a stage decides to fork from, wait for or start a warm process (flows/warm.py),
without starting one: the project lock, who holds it, and which stages it would refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows import warm


def test_one_lock_per_project_and_its_holder_must_be_a_live_warm_process(tmp_path: Path) -> None:
    lock = warm.claim(tmp_path, 600, wait=0)
    assert lock is not None
    assert warm.claim(tmp_path, 600, wait=0) is None  # another starter, while it is held
    # it names this process, which is no `python -m flows warm`: a reused pid is nobody's lock
    assert warm.lock_path(tmp_path).read_text().split() == [str(os.getpid()), "600", "starting"]
    assert warm.holder(tmp_path) is None
    lock.say("serving")
    lock.release()
    assert warm.lock_path(tmp_path).read_text().split()[2] == "serving"
    again = warm.claim(tmp_path, 0, wait=0)
    assert again is not None
    again.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    warm.lock_path(tmp_path).write_text(f"{int(dead.stdout)} 600 serving")
    assert warm.holder(tmp_path) is None  # a dead one's


def test_a_stage_with_other_prefect_settings_does_not_fork_onto_the_warm_process_own_server(
    tmp_path: Path,
) -> None:
    """With no Prefect server configured, the warm process's temporary server stands in for the one
    the stage would boot: only with the same PREFECT_* settings (its database under PREFECT_HOME).
    With a server configured, the stage's own URL is used in the fork anyway."""
    own = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path)}
    request = warm._request(["synth"]) | {"env": own}
    assert warm._refusal(request, own) == ""
    other = request | {"env": own | {"PREFECT_HOME": str(tmp_path / "other")}}
    assert "PREFECT_HOME differ" in warm._refusal(other, own)
    served = own | {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert warm._refusal(other | {"env": other["env"] | {"PREFECT_API_URL": "http://x/api"}}, served) == ""


def test_the_idle_time_is_seconds_and_nothing_else(monkeypatch) -> None:
    monkeypatch.delenv(warm.IDLE, raising=False)
    assert warm.idle_seconds() == 600
    for value, seconds in (("0", 0.0), ("90", 90.0), ("2.5", 2.5)):
        monkeypatch.setenv(warm.IDLE, value)
        assert warm.idle_seconds() == seconds
    for bad in ("10m", "", "inf", "nan", "-1"):  # inf would overflow the warm process's select
        monkeypatch.setenv(warm.IDLE, bad)
        with pytest.raises(SystemExit, match=f"{warm.IDLE} must be a number of seconds"):
            warm.idle_seconds()
