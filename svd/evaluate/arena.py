"""The human-preference arena (paper App. E): two models' videos for the same conditioning frame or
prompt side by side in a local web page, where a person picks the better one on each axis (visual
quality, prompt following). Votes go to SQLite; svd.evaluate.elo ranks the models.

`svd arena serve --model NAME=DIR ...` pairs the samples that the models' evaluations wrote under
the same file name. Evaluation writes `<key>_m<bucket>.mp4` per held-out clip and motion bucket,
beside the conditioning frame `<key>.png` (image-to-video) or the caption `<key>.txt`
(text-to-video). Every two models meet on every shared sample, with the sides drawn at random and
seeded, so the same folders give the same pairs. The page never names the models, and it shows the
pair with the fewest votes, so votes spread evenly. `svd arena results` prints the ranking per axis
and logs it to MLflow. A NAME that is a registered model version (`name/version`) also gets its
ratings as tags on that version and as the Arena section of its model card.

Files are served only by a pair's id, through paths the arena itself recorded: nothing in a
request becomes a path.
"""

from __future__ import annotations

import hashlib
import html
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import combinations
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from svd.evaluate.elo import Rating, Vote, ranking
from svd.storage import file_sha256

AXES = {"quality": "Visual quality", "prompt": "Prompt following"}
SCHEMA = """
create table if not exists models (name text primary key, dir text not null);
create table if not exists pairs (
    id integer primary key, sample text not null, left text not null, right text not null,
    left_sha256 text not null, right_sha256 text not null, unique (sample, left, right));
create table if not exists votes (
    id integer primary key, pair integer not null references pairs (id), axis text not null,
    winner text not null check (winner in ('left', 'right', 'tie')), at text not null);
"""


class ChangedSample(RuntimeError):
    pass


class Arena:
    """The arena's SQLite file: models, pairs and votes."""

    def __init__(self, db: Path) -> None:
        self.db = db
        db.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as c:
            c.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per use: the server answers each request on its own thread."""
        c = sqlite3.connect(self.db)
        try:
            with c:  # a transaction, committed on success
                yield c
        finally:
            c.close()

    def add(self, models: dict[str, Path], seed: int = 0) -> int:
        """Record the models and pair every two of them on each sample they share; returns the
        pairs added (a model already there keeps its pairs)."""
        with self.connect() as c:
            for name, folder in models.items():
                if not any(folder.glob("*.mp4")):
                    raise ValueError(f"arena: {folder} holds no .mp4 samples for model {name}")
                c.execute("insert or replace into models values (?, ?)", (name, str(folder.resolve())))
            folders = {n: Path(d) for n, d in c.execute("select name, dir from models")}
            before = c.execute("select count(*) from pairs").fetchone()[0]
            for a, b in combinations(sorted(folders), 2):
                shared = sorted(
                    {p.name for p in folders[a].glob("*.mp4")} & {p.name for p in folders[b].glob("*.mp4")}
                )
                for sample in shared:
                    flip = hashlib.sha256(f"{seed}/{sample}/{a}/{b}".encode()).digest()[0] % 2
                    left, right = (b, a) if flip else (a, b)
                    hashes = (file_sha256(folders[left] / sample), file_sha256(folders[right] / sample))
                    c.execute(
                        "insert or ignore into pairs (sample, left, right, left_sha256, right_sha256)"
                        " values (?, ?, ?, ?, ?)",
                        (sample, left, right, *hashes),
                    )
            return c.execute("select count(*) from pairs").fetchone()[0] - before

    def next_pair(self) -> tuple[int, str] | None:
        """(id, sample) of the pair with the fewest votes, the first such when several tie."""
        with self.connect() as c:
            return c.execute(
                "select p.id, p.sample from pairs p left join votes v on v.pair = p.id"
                " group by p.id order by count(v.id), p.id limit 1"
            ).fetchone()

    def file(self, pair: int, part: str) -> Path | None:
        """The left or right video of a pair, or its prompt (`<key>.png` or `<key>.txt`). A video
        whose bytes changed since it was paired raises: votes would go to a model that never made
        it (a new evaluation rewrites its samples folder in place)."""
        if part not in ("left", "right", "prompt"):
            return None
        with self.connect() as c:
            row = c.execute(
                "select p.sample, l.dir, r.dir, p.left_sha256, p.right_sha256 from pairs p"
                " join models l on l.name = p.left join models r on r.name = p.right where p.id = ?",
                (pair,),
            ).fetchone()
        if row is None:
            return None
        sample, left, right, left_sha, right_sha = row
        if part in ("left", "right"):
            path = Path(left if part == "left" else right) / sample
            if not path.is_file() or file_sha256(path) != (left_sha if part == "left" else right_sha):
                raise ChangedSample(
                    f"{path} changed since the arena paired it: copy each model's samples"
                    " to a folder of their own and start a new arena (--db)"
                )
            return path
        key = sample.rsplit("_m", 1)[0]
        found = [
            Path(left) / f"{key}{ext}" for ext in (".png", ".txt") if (Path(left) / f"{key}{ext}").is_file()
        ]
        return found[0] if found else None

    def vote(self, pair: int, winners: dict[str, str]) -> None:
        if set(winners) != set(AXES) or not set(winners.values()) <= {"left", "right", "tie"}:
            raise ValueError(f"a vote names left, right or tie for each of {', '.join(AXES)}: got {winners}")
        at = datetime.now(UTC).isoformat()
        with self.connect() as c:
            if c.execute("select 1 from pairs where id = ?", (pair,)).fetchone() is None:
                raise ValueError(f"no pair {pair}")
            c.executemany(
                "insert into votes (pair, axis, winner, at) values (?, ?, ?, ?)",
                [(pair, axis, w, at) for axis, w in winners.items()],
            )

    def votes(self, axis: str) -> list[Vote]:
        with self.connect() as c:
            rows = c.execute(
                "select p.left, p.right, v.winner from votes v join pairs p on p.id = v.pair"
                " where v.axis = ? order by v.id",
                (axis,),
            ).fetchall()
        return [Vote(*r) for r in rows]

    def models(self) -> list[str]:
        with self.connect() as c:
            return [n for (n,) in c.execute("select name from models order by name")]

    def ranking(self, rounds: int = 1000) -> dict[str, list[Rating]]:
        return {axis: ranking(self.votes(axis), self.models(), rounds) for axis in AXES}


def page(arena: Arena) -> str:
    pair = arena.next_pair()
    if pair is None:
        return shell("<p>No pairs yet: start the arena with two models' samples (--model NAME=DIR).</p>")
    pid, sample = pair
    prompt = arena.file(pid, "prompt")
    if prompt is None:
        shown = f"<p class=prompt>{html.escape(sample)}</p>"
    elif prompt.suffix == ".png":
        shown = f'<p class=prompt>Conditioning frame:<br><img src="/media/{pid}/prompt" alt="prompt"></p>'
    else:
        shown = f"<p class=prompt>Prompt: {html.escape(prompt.read_text())}</p>"
    axes = "".join(
        f"<fieldset><legend>{label}</legend>"
        + "".join(
            f"<label><input type=radio name={axis} value={w} id={axis}-{w} required>"
            f" {w.capitalize()}</label> "
            for w in ("left", "right", "tie")
        )
        + "</fieldset>"
        for axis, label in AXES.items()
    )
    videos = "".join(
        f'<figure><video src="/media/{pid}/{side}" autoplay loop muted controls></video>'
        f"<figcaption>{side.capitalize()}</figcaption></figure>"
        for side in ("left", "right")
    )
    return shell(
        f"{shown}<div class=pair>{videos}</div>"
        f'<form method=post action="/vote"><input type=hidden name=pair value={pid}>{axes}'
        "<button type=submit id=vote>Vote</button></form>"
    )


def ranking_page(arena: Arena, rounds: int = 1000) -> str:
    tables = []
    for axis, rated in arena.ranking(rounds).items():
        rows = "".join(
            f"<tr><td>{i}</td><td class=model>{html.escape(r.model)}</td><td>{r.elo:.1f}</td>"
            f"<td>{r.low:.1f} to {r.high:.1f}</td><td>{r.votes}</td></tr>"
            for i, r in enumerate(rated, 1)
        )
        tables.append(
            f"<h2>{AXES[axis]}</h2><table id={axis}><tr><th>rank</th><th>model</th><th>Elo</th>"
            f"<th>95% of {rounds} orderings</th><th>votes</th></tr>{rows}</table>"
        )
    return shell("".join(tables))


def shell(body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>svd arena</title><style>"
        "body{font-family:sans-serif;margin:2em} .pair{display:flex;gap:1em} video{width:100%}"
        "figure{flex:1;margin:0} img{max-width:320px} td,th{padding:0 1em}</style></head><body>"
        f'<h1>svd arena</h1>{body}<p><a href="/">vote</a> · <a href="/ranking">ranking</a></p></body></html>'
    )


def serve(arena: Arena, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The arena's web server (not yet serving: call serve_forever)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if parts == [""]:
                return self.send(HTTPStatus.OK, "text/html; charset=utf-8", page(arena).encode())
            if parts == ["ranking"]:
                return self.send(HTTPStatus.OK, "text/html; charset=utf-8", ranking_page(arena).encode())
            if len(parts) == 3 and parts[0] == "media" and parts[1].isdecimal():
                try:
                    path = arena.file(int(parts[1]), parts[2])
                except ChangedSample as e:
                    return self.send(HTTPStatus.CONFLICT, "text/plain; charset=utf-8", str(e).encode())
                if path is not None and path.is_file():
                    kind = {".mp4": "video/mp4", ".png": "image/png"}.get(
                        path.suffix, "text/plain; charset=utf-8"
                    )
                    return self.send(HTTPStatus.OK, kind, path.read_bytes())
            self.send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

        def do_POST(self) -> None:
            if self.path != "/vote":
                return self.send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
                return self.send(HTTPStatus.FORBIDDEN, "text/plain", b"votes come from the arena's own page")
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 <= length <= 4096:
                    raise ValueError(f"a vote is a short form, not {length} bytes")
                form = parse_qs(self.rfile.read(length).decode())
                arena.vote(int(form["pair"][0]), {axis: form[axis][0] for axis in AXES})
            except (KeyError, ValueError) as e:  # UnicodeDecodeError is a ValueError
                return self.send(HTTPStatus.BAD_REQUEST, "text/plain", f"bad vote: {e}".encode())
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: votes are in the database
            pass

    return ThreadingHTTPServer((host, port), Handler)


def log_results(arena: Arena, rounds: int = 1000) -> dict[str, list[Rating]]:
    """The ranking per axis as an MLflow run of experiment `arena`; a model named `name/version`
    after a registered version also gets its ratings as tags of that version and in its model card
    (svd.registry), replacing an earlier arena result there."""
    import mlflow
    import pandas as pd

    from svd import tracking
    from svd.registry import ARENA, DESCRIPTION

    results, models = arena.ranking(rounds), arena.models()
    tracking.configure("arena")
    about = "Elo (K = 1 from 1000) of the arena's votes, mean over random orderings of them"
    with mlflow.start_run(run_name="arena", description=about):
        mlflow.log_params({"models": ", ".join(models), "orderings": rounds})
        rows = []
        for axis, rated in results.items():
            mlflow.log_metric(f"votes_{axis}", len(arena.votes(axis)))
            for r in rated:
                key = re.sub(r"[^\w\-. /]", "_", r.model)  # characters MLflow allows in a metric name
                mlflow.log_metric(f"elo_{axis}/{key}", r.elo)
                rows.append({"axis": axis, **vars(r)})
        mlflow.log_table(pd.DataFrame(rows), "arena/ranking.json")
    client = mlflow.MlflowClient()
    for name in models:
        registered, _, version = name.rpartition("/")
        if not (registered and version.isdigit()):
            continue
        lines = [f"Against {', '.join(m for m in models if m != name)}:"]
        for axis, rated in results.items():
            rank, r = next((i, r) for i, r in enumerate(rated, 1) if r.model == name)
            client.set_model_version_tag(registered, version, f"arena.elo_{axis}", f"{r.elo:.1f}")
            lines.append(
                f"- {AXES[axis]}: Elo {r.elo:.1f} (95%: {r.low:.1f} to {r.high:.1f}), rank {rank} of"
                f" {len(rated)}, {r.votes} votes"
            )
        card = (client.get_model_version(registered, version).description or "").partition(ARENA)[0]
        section = ARENA + "\n" + "\n".join(lines)  # the latest result replaces an earlier one
        client.update_model_version(
            registered, version, description=card[: DESCRIPTION - len(section)] + section
        )
    return results
