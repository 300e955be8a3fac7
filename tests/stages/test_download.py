"""The download stage: img2dataset in real Dask worker processes against the loopback server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import webdataset as wds

from manifests import schema as S
from manifests.io import join_stages
from manifests.layout import RunLayout
from pipeline.demo_server import PHOTOS, photo_bytes

# URL path on the demo server -> (dl_status, reject reason after download)
EXPECTED = {
    "/status/404": ("failed_to_download", "download:http_404"),
    "/status/500": ("failed_to_download", "download:http_500"),
    "/html": ("failed_to_resize", "download:undecodable"),
    "/truncated.jpg": ("failed_to_resize", "download:undecodable"),
    "/noai/grace_hopper.jpg": ("failed_to_download", "download:x_robots_tag"),
    "/slow/coffee.jpg": ("failed_to_download", "download:timeout"),
    "/redirect/chelsea.jpg": ("success", None),
    "/img/grace_hopper.jpg?copy=1": ("success", None),
    **{f"/img/{name}.jpg": ("success", None) for name in PHOTOS},
}


def _joined(run_dir: Path) -> list[dict[str, object]]:
    layout = RunLayout(run_dir)
    rows: list[dict[str, object]] = []
    for shard in layout.done_shards("download"):
        rows += join_stages(layout, ["candidates", "download"], shard).to_pylist()
    return rows


def _path(url: object) -> str:
    text = str(url)
    return "/" + text.split("/", 3)[3] if text.startswith("http://127.0.0.1") else text


def test_every_candidate_has_exact_status_and_reason(reference_run: Path, demo_input: Path) -> None:
    rows = _joined(reference_run)
    candidates = pq.read_table(demo_input)
    assert len(rows) == candidates.num_rows
    attempted = {_path(r[S.URL]): r for r in rows if r[S.DL_STATUS] != "not_attempted"}
    assert set(attempted) == set(EXPECTED)
    for path, (status, why) in EXPECTED.items():
        row = attempted[path]
        assert (row[S.DL_STATUS], row[S.REJECT_REASON]) == (status, why), path
    not_attempted = [r for r in rows if r[S.DL_STATUS] == "not_attempted"]
    assert sorted(str(r[S.REJECT_REASON]) for r in not_attempted) == [
        "candidates:duplicate_url",
        "candidates:invalid_url",
        "candidates:missing_url",
        "candidates:unsupported_scheme",
    ]
    assert attempted["/status/404"][S.DL_ERROR] == "HTTP Error 404: Not Found"


def test_tars_hold_the_bytes_located_by_sample_id(reference_run: Path) -> None:
    layout = RunLayout(reference_run)
    rows = {r[S.SAMPLE_ID]: r for r in _joined(reference_run) if r[S.DL_STATUS] == "success"}
    seen: dict[str, dict[str, object]] = {}
    for shard in layout.done_shards("download"):
        tar = layout.shard_file("download", shard, ".tar")
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            meta = json.loads(sample["json"])
            seen[meta[S.SAMPLE_ID]] = {"key": sample["__key__"], "jpg": sample["jpg"]}
    assert set(seen) == set(rows)
    for sample_id, row in rows.items():
        assert seen[sample_id]["key"] == row[S.DL_KEY]
        name = _path(row[S.URL]).rsplit("/", 1)[1].split(".jpg")[0]
        served = photo_bytes(name)
        assert row[S.DL_SHA256] == hashlib.sha256(served).hexdigest()
        # keep_ratio: the shorter side is brought down to image_size, never up.
        assert min(int(str(row[S.DL_WIDTH_PX])), int(str(row[S.DL_HEIGHT_PX]))) <= 512


def test_shard_logs_capture_img2dataset_output(reference_run: Path) -> None:
    layout = RunLayout(reference_run)
    for shard in layout.done_shards("download"):
        text = Path(layout.shard_log("download", shard)).read_text()
        assert f"start download shard {shard:05d}" in text
        assert "img2dataset: count=" in text  # the subprocess's own summary
