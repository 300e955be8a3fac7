"""``laionface retry``: only the failed samples are asked for again, and only what depends on
them is recomputed, through the real download path, Dask and the demo config."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from manifests import schema as S
from manifests.io import read_marker
from manifests.layout import RunLayout
from pipeline.cli import main
from pipeline.retry import ReasonTally, RetryResult, retry_failed
from pipeline.runner import run_pipeline
from stages.candidates_ingest import locate
from stages.download_errors import _PATTERNS
from stages.download_tar import image_bytes, open_download_tar, replace_samples
from stages.retry_reasons import KNOWN_WHYS, ReasonSelector
from tests.conftest import demo_config, write_parquet
from tests.pipeline.retry_server import RetryServer, serve_retry, served_bytes

# (route, photo, input shard): 8 rows in shards of 3, so 3 shards. Shard 0 holds both samples
# the retry recovers; shard 1 one that still fails the same way; shard 2 none, but a near copy
# of the recovered astronaut (dedup then keeps the larger face, the recovered one).
PLAN = (
    ("flaky", "astronaut", 0),
    ("stall", "grace_hopper_mirror", 0),
    ("ok", "rocket", 0),
    ("down", "astronaut_mirror", 1),
    ("ok", "grace_hopper", 1),
    ("ok", "astronaut_resized", 2),
    ("ok", "coffee", 2),
    ("gone", "chelsea", 2),
)
N_SHARDS = 3
REASONS = ["download:timeout", "download:http_5xx"]
# Generous for every answer that comes (a loaded machine must not time them out); the stalled
# request gets no answer before the server shuts down, minutes later.
TIMEOUT = "download.timeout_s=30"


def _steered(server: RetryServer, route: str, photo: str, shard: int) -> str:
    """The URL of ``photo`` on ``route`` with a query that buckets it into ``shard``."""
    for v in range(10_000):
        url = server.url(route, photo, f"?v={v}")
        if locate(url, "", 0, N_SHARDS)[4] == shard:
            return url
    raise AssertionError("no query buckets the URL into the shard")


def _input(server: RetryServer, path: Path) -> tuple[Path, dict[str, str]]:
    """The candidates file and each route's URL (by route, the photo for "ok")."""
    urls = {(r if r != "ok" else p): _steered(server, r, p, s) for r, p, s in PLAN}
    n = len(PLAN)
    columns: dict[str, list[object]] = {
        "URL": [urls[r if r != "ok" else p] for r, p, _ in PLAN],
        "TEXT": [f"a photo of {p.replace('_', ' ')}" for _, p, _ in PLAN],
        "WIDTH": [512] * n,
        "HEIGHT": [512] * n,
        "similarity": [0.32] * n,
        "punsafe": [0.01] * n,
        "pwatermark": [0.05] * n,
    }
    return write_parquet(path, columns), urls


def _rows(layout: RunLayout, stage: str) -> dict[str, dict[str, object]]:
    """Every row of a stage's manifests, by URL of the candidates (sample_id otherwise)."""
    out = {}
    for shard in layout.done_shards("candidates"):
        cand = pq.read_table(layout.manifest("candidates", shard), columns=[S.SAMPLE_ID, S.URL])
        url = dict(zip(cand[S.SAMPLE_ID].to_pylist(), cand[S.URL].to_pylist(), strict=True))
        for row in pq.read_table(layout.manifest(stage, shard)).to_pylist():
            out[url[row[S.SAMPLE_ID]]] = {**row, "shard": shard}
    return out


def _published(run_dir: Path) -> set[str]:
    """sample_ids of the index parquets, checked against the tars read back with webdataset."""
    out = run_dir / "shards"
    indexed = [i for p in sorted(out.glob("*.parquet")) for i in pq.read_table(p)[S.SAMPLE_ID]]
    ids = {i.as_py() for i in indexed}
    samples = list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(ids)
    assert all({"jpg", "txt", "json"} <= set(s) for s in samples)
    return ids


def _tree(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the run but the shard logs (a retry's img2dataset appends)."""
    return {
        p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "_logs" not in p.parts
    }


def _member_bytes(layout: RunLayout, shard: int, key: str) -> dict[str, bytes]:
    with tarfile.open(layout.shard_file("download", shard, ".tar")) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name.split(".")[0] == key
        }


def test_retry_fetches_only_the_failed_samples_and_recomputes_their_shards(
    tmp_path: Path, dask_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    layout = RunLayout(run_dir)
    with serve_retry() as server:
        input_file, url = _input(server, tmp_path / "input.parquet")
        config = demo_config(
            run_dir,
            input_file,
            f"cluster.address={dask_address}",
            "candidates.shard_size=3",
            TIMEOUT,
            *server.overrides,
        )
        assert run_pipeline(config).ok
        before = _check_first_run(layout, url, server)
        old_dl = _rows(layout, "download")
        rocket = _member_bytes(layout, 0, str(old_dl[url["rocket"]][S.DL_KEY]))
        markers = {(st, s): layout.done_marker(st, s).read_bytes() for st, s in before}

        result = retry_failed(run_dir, REASONS)

        ids = {r: str(old_dl[url[r]][S.SAMPLE_ID]) for r in ("flaky", "stall", "down")}
        _check_result(result, ids)
        # One new request per retried URL, none for any other.
        assert server.hits == {_path(u): 2 if k in ids else 1 for k, u in url.items()}
        _check_download_merged(layout, url, old_dl, rocket)
        # Not recomputed: shards 1 and 2 of filter, shard 1 of caption.
        for key in [("filter", 1), ("filter", 2), ("caption", 1)]:
            assert layout.done_marker(*key).read_bytes() == markers[key]
        dedup = _rows(layout, "dedup")[url["astronaut_resized"]]
        assert (dedup[S.REJECT_REASON], dedup[S.DEDUP_GROUP]) == ("dedup:near", ids["flaky"])
        assert _rows(layout, "caption")[url["astronaut_resized"]][S.KEEP] is False
        grace_hopper = old_dl[url["grace_hopper"]][S.SAMPLE_ID]
        assert _published(run_dir) == {grace_hopper, ids["flaky"], ids["stall"]}

        _check_retry_again(run_dir, server, url, capsys)
        _check_refusals(run_dir, capsys)


def _check_result(result: RetryResult, ids: dict[str, str]) -> None:
    """Which samples were retried and recovered, and what the runner recomputed after."""
    assert {s: set(v) for s, v in result.retried.items()} == {
        0: {ids["flaky"], ids["stall"]},
        1: {ids["down"]},
    }
    assert result.reasons == {
        "download:http_500": ReasonTally(1, 0, {"download:http_500": 1}),
        "download:http_502": ReasonTally(1, 1, {}),
        "download:timeout": ReasonTally(1, 1, {}),
    }
    assert result.recovered == tuple(sorted([ids["flaky"], ids["stall"]]))
    # Shard 1's sample failed again as before: its shard is unchanged, nothing below reruns.
    assert result.changed == (0,) and result.ok and not result.dry_run
    assert result.actions == {
        "filter": {"run": [0], "re-decide": []},
        "dedup": {"run": [0, 1, 2], "re-decide": []},
        # shard 2: dedup now drops its astronaut, a near copy of the one recovered
        "caption": {"run": [0, 2], "re-decide": []},
        "shard": {"run": [0, 1, 2], "re-decide": []},
    }


def _path(url: str) -> str:
    """The request path the server counts: path and query."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _check_first_run(
    layout: RunLayout, url: dict[str, str], server: RetryServer
) -> list[tuple[str, int]]:
    """The first run: each URL asked once, the failures as expected; the markers to watch."""
    assert layout.done_shards("download") == [0, 1, 2]
    rows = _rows(layout, "download")
    assert {k: (rows[u]["shard"], rows[u][S.REJECT_REASON]) for k, u in url.items()} == {
        "flaky": (0, "download:http_502"),
        "stall": (0, "download:timeout"),
        "rocket": (0, None),
        "down": (1, "download:http_500"),
        "grace_hopper": (1, None),
        "astronaut_resized": (2, None),
        "coffee": (2, None),
        "gone": (2, "download:http_404"),
    }
    assert server.hits == {_path(u): 1 for u in url.values()}
    ids = {rows[url[k]][S.SAMPLE_ID] for k in ("grace_hopper", "astronaut_resized")}
    assert _published(layout.root) == ids
    return [(st, s) for st in ("filter", "caption") for s in (1, 2)]


def _check_download_merged(
    layout: RunLayout,
    url: dict[str, str],
    old: dict[str, dict[str, object]],
    rocket: dict[str, bytes],
) -> None:
    """Recovered rows are successes with their reasons cleared, under their first dl_key;
    every other row has the values it had; the tar has their images, rocket's bytes as
    they were."""
    new = _rows(layout, "download")
    for key, photo in (("flaky", "astronaut"), ("stall", "grace_hopper_mirror")):
        row = new[url[key]]
        assert (row[S.DL_STATUS], row[S.KEEP], row[S.REJECT_REASON], row[S.DL_ERROR]) == (
            "success",
            True,
            None,
            None,
        )
        assert row[S.DL_KEY] == old[url[key]][S.DL_KEY]
        assert row[S.DL_SHA256] == hashlib.sha256(served_bytes(photo)).hexdigest()
        with open_download_tar(layout, 0) as (tar, members):
            blob = image_bytes(tar, members, row[S.DL_KEY])
        assert blob is not None
        assert Image.open(io.BytesIO(blob)).size == (row[S.DL_WIDTH_PX], row[S.DL_HEIGHT_PX])
    assert new[url["down"]][S.REJECT_REASON] == "download:http_500"
    for key in ("rocket", "down", "grace_hopper", "astronaut_resized", "coffee", "gone"):
        assert new[url[key]] == old[url[key]]
    assert _member_bytes(layout, 0, str(old[url["rocket"]][S.DL_KEY])) == rocket
    marker = read_marker(layout, "download", 0)
    assert marker is not None
    assert (marker.report.n_in, marker.report.n_out, marker.report.dropped) == (3, 3, {})
    assert marker.report.seconds["retry"] > 0
    shard1 = read_marker(layout, "download", 1)
    assert shard1 is not None and shard1.report.dropped == {"download:http_500": 1}


def _check_retry_again(
    run_dir: Path,
    server: RetryServer,
    url: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing left to match: nothing asked, nothing written. The sample still failing: asked
    once more, the same answer, so nothing downstream is recomputed."""
    hits = dict(server.hits)
    tree = _tree(run_dir)
    capsys.readouterr()
    assert main(["retry", str(run_dir), "--reasons", "download:timeout,download:http_502"]) == 0
    assert capsys.readouterr().out == "retry: retried 0 sample(s) in 0 download shard(s)\n"
    assert main(["retry", str(run_dir), "--reasons", "download:http_5xx", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "retry: would retry 1 sample(s) in 1 download shard(s)"
    assert server.hits == hits and _tree(run_dir) == tree
    assert main(["retry", str(run_dir), "--reasons", "download:http_5xx"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "retry: retried 1 sample(s) in 1 download shard(s)"
    assert re.fullmatch(r"\s+download:http_500\s+1\s+0\s+download:http_500 1", out[2])
    assert len(out) == 3  # nothing recomputed
    assert server.hits == {**hits, _path(url["down"]): 3}
    assert _tree(run_dir) == tree


def _check_refusals(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reasons that can never match and overrides of other sections: one line, exit 2."""
    for argv, start in [
        (["--reasons", "download:tiemout"], "reason 'download:tiemout' can never match"),
        (["--reasons", "download:http_9xx"], "reason 'download:http_9xx' can never match"),
        (["--reasons", "face_count:zero"], "reason 'face_count:zero' can never match"),
        (["--reasons", "download:timeout", "--set", "filter.batch_size=4"], "retry --set may"),
    ]:
        assert main(["retry", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"laionface retry: {start}")
        if "can never match" in start:
            assert "download:timeout" in err[0] and "download:http_5xx" in err[0]


def test_reason_selector_exact_classes_and_globs() -> None:
    selector = ReasonSelector.parse(["download:timeout", "download:http_5xx"])
    assert [selector.matches(r) for r in ["download:timeout", "download:http_500"]] == [True] * 2
    assert selector.matches("download:http_599") and not selector.matches("download:http_404")
    assert not selector.matches("download:timeouts") and not selector.matches(None)
    glob = ReasonSelector.parse(["download:http_*"])
    assert glob.matches("download:http_404") and not glob.matches("download:timeout")
    # A reason the manifests hold is valid even when the stage's list does not name it.
    assert ReasonSelector.parse(["download:held_back"], ["download:held_back"]).matches(
        "download:held_back"
    )
    with pytest.raises(ValueError, match="reason 'download:held_back' can never match"):
        ReasonSelector.parse(["download:held_back"])


def test_known_reasons_cover_every_download_error_class() -> None:
    templates = {template for _, template in _PATTERNS if template != "http_{0}"}
    assert templates <= set(KNOWN_WHYS)


def test_replace_samples_keeps_other_members_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "00000.tar"

    def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    replace_samples(path, [], [member("a.jpg", b"A" * 700), member("b.jpg", b"B")])
    kept = path.read_bytes()[:1536]  # a's header and its two data blocks
    replace_samples(path, ["b", "c"], [member("c.jpg", b"C" * 10), member("c.txt", b"t")])
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert [tar.extractfile(n).read() for n in names] == [b"A" * 700, b"C" * 10, b"t"]  # type: ignore[union-attr]
    assert names == ["a.jpg", "c.jpg", "c.txt"]
    assert path.read_bytes()[:1536] == kept and path.stat().st_size % tarfile.RECORDSIZE == 0
