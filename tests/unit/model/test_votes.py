"""The arena's Elo against hand computation and its store's pairing and vote rules (the voting page
itself is driven in a real browser in tests/integration/test_arena.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svd.evaluate.arena import Arena, ChangedSample, serve
from svd.evaluate.elo import Vote, elo, ranking


def test_elo_moves_by_k_times_the_surprise() -> None:
    assert elo([Vote("a", "b", "left")], ["a", "b"]) == {"a": 1000.5, "b": 999.5}  # E = 0.5, K = 1
    assert elo([Vote("a", "b", "tie")], ["a", "b"]) == {"a": 1000.0, "b": 1000.0}
    two = elo([Vote("a", "b", "left"), Vote("b", "a", "left")], ["a", "b"])
    surprise = 1 - 1 / (1 + 10 ** ((1000.5 - 999.5) / 400))  # b, rated lower, wins the second
    assert two["b"] == pytest.approx(999.5 + surprise) and two["a"] + two["b"] == pytest.approx(2000)


def test_the_ranking_follows_the_votes_over_random_orderings() -> None:
    votes = [Vote("a", "b", "left")] * 8 + [Vote("b", "a", "left")] * 2 + [Vote("c", "a", "tie")] * 4
    rated = ranking(votes, ["a", "b", "c"], rounds=200)
    assert [r.model for r in rated] == ["a", "c", "b"]
    a = rated[0]
    assert a.low <= a.elo <= a.high and a.votes == 14 and a.elo > 1000 > rated[-1].elo
    assert ranking(votes, ["a", "b", "c"], rounds=200) == rated  # seeded orderings


def samples(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for n in names:
        (folder / n).write_bytes(b"not decoded by the store")
    return folder


def test_models_meet_on_shared_samples_with_seeded_sides(tmp_path: Path) -> None:
    a = samples(tmp_path / "a", ["k1_m000.mp4", "k1_m128.mp4", "k2_m000.mp4"])
    b = samples(tmp_path / "b", ["k1_m000.mp4", "k1_m128.mp4"])
    (a / "k1.png").write_bytes(b"png")
    arena = Arena(tmp_path / "arena.sqlite")
    assert arena.add({"a": a, "b": b}) == 2  # the samples both have
    assert arena.add({"a": a, "b": b}) == 0  # again: nothing new, the sides kept
    again = Arena(tmp_path / "other.sqlite")
    again.add({"a": a, "b": b})
    with arena.connect() as c1, again.connect() as c2:
        query = "select sample, left, right from pairs order by sample"
        assert c1.execute(query).fetchall() == c2.execute(query).fetchall()
    pid, sample = arena.next_pair() or (0, "")
    assert sample == "k1_m000.mp4" and arena.file(pid, "prompt") == (a / "k1.png").resolve()
    assert arena.file(pid, "left") in {(a / sample).resolve(), (b / sample).resolve()}
    assert arena.file(999, "left") is None and arena.file(pid, "../../etc/passwd") is None
    arena.vote(pid, {"quality": "left", "prompt": "tie"})
    assert arena.next_pair() != (pid, sample)  # the pair with the fewest votes comes next
    for bad in ({"quality": "left"}, {"quality": "up", "prompt": "left"}):
        with pytest.raises(ValueError, match="a vote names"):
            arena.vote(pid, bad)
    with pytest.raises(ValueError, match="no pair 999"):
        arena.vote(999, {"quality": "left", "prompt": "left"})
    with pytest.raises(ValueError, match=r"holds no \.mp4"):
        arena.add({"c": tmp_path / "missing"})


def test_a_sample_rewritten_after_pairing_is_refused(tmp_path: Path) -> None:
    """A new evaluation rewrites its samples folder in place: votes must not go to the new model."""
    a = samples(tmp_path / "a", ["k1_m000.mp4"])
    b = samples(tmp_path / "b", ["k1_m000.mp4"])
    arena = Arena(tmp_path / "arena.sqlite")
    arena.add({"a": a, "b": b})
    (a / "k1_m000.mp4").write_bytes(b"another model's video")
    with pytest.raises(ChangedSample, match="changed since the arena paired it"):
        for side in ("left", "right"):
            arena.file(1, side)


def test_the_server_takes_votes_from_its_own_page_only(tmp_path: Path) -> None:
    import http.client
    import threading

    arena = Arena(tmp_path / "arena.sqlite")
    arena.add({"a": samples(tmp_path / "a", ["k_m000.mp4"]), "b": samples(tmp_path / "b", ["k_m000.mp4"])})
    server = serve(arena, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"

    def post(body: bytes, **headers: str) -> int:
        c = http.client.HTTPConnection(host, timeout=10)
        c.request("POST", "/vote", body, {"Content-Type": "application/x-www-form-urlencoded", **headers})
        return c.getresponse().status

    try:
        vote = b"pair=1&quality=left&prompt=tie"
        assert post(vote, Origin="http://evil.example") == 403  # another site's page posting here
        assert post(b"pair=1&quality=up&prompt=tie") == 400 and post(b"\xff\xfe") == 400
        assert arena.votes("quality") == []
        assert post(vote, Origin=f"http://{host}") == 303 and len(arena.votes("quality")) == 1
        c = http.client.HTTPConnection(host, timeout=10)
        c.request("GET", "/media/1/..%2f..%2farena.sqlite")  # a part no pair has
        assert c.getresponse().status == 404
    finally:
        server.shutdown()
        server.server_close()
