"""The audit report: its numbers, its HTML, and a headless-Chromium screenshot of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manifests import schema as S
from manifests.layout import RunLayout
from pipeline.report_data import Threshold, collect, thresholds
from pipeline.report_html import write_report
from pipeline.status import RunDirError
from tests.publish.synthetic import RUN_CONFIG, sid

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(published_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "audit.html"
    files = write_report(published_run, out)
    assert files.json == out.with_suffix(".json")
    return files.html, json.loads(files.json.read_text())


def test_thresholds_follow_the_filter_chain() -> None:
    found = {(t.column, t.kind, t.value) for t in thresholds(RUN_CONFIG)}
    assert found == {
        (S.FACE_COUNT, "min", 1.0),
        (S.FACE_COUNT, "max", 3.0),
        (S.FACE_SIZE_PX, "min", 80.0),
        (S.FACE_AREA_FRACTION, "min", 0.02),
        (S.FACE_SHARPNESS, "min", 50.0),
        (S.NSFW_SCORE, "max", 0.2),
        (S.SIMILARITY, "min", 0.2),
    }  # clip is configured but not in the chain: its threshold does not apply
    pose = thresholds({"filter": {"face_pose": {"type": "face_pose", "max_abs_yaw_deg": 45}}})
    assert pose == [Threshold(S.FACE_YAW_DEG, 45.0, "abs_max", "filter.face_pose.max_abs_yaw_deg")]


def test_numbers(published_run: Path, report: tuple[Path, dict]) -> None:
    data = collect(RunLayout(published_run))
    assert data.stages == ["candidates", "download", "filter", "dedup", "caption", "shard"]
    assert [(r.n_in, r.n_out) for r in data.funnel] == [
        (12, 11),
        (11, 10),
        (10, 9),
        (9, 8),
        (8, 7),
        (7, 6),
    ]
    sharp = next(h for h in data.histograms if h.column == S.FACE_SHARPNESS)
    assert sharp.count == 12 and sum(sharp.counts) == 12
    assert sharp.edges[0] == 50.0  # the range reaches down to the threshold
    assert sharp.mean == pytest.approx(np.mean([60 + 7 * i for i in range(6)]))
    assert data.caption_words is not None and data.caption_words.count == 6
    assert len(data.timings) == 12
    _, body = report
    assert body["galleries"]["kept"][:2] == [sid("a0"), sid("a1")]
    assert body["galleries"]["face_count:zero"] == [sid("a5")]
    assert [f["n_dropped"] for f in body["funnel"]] == [1] * 6
    nsfw = next(h for h in body["histograms"] if h["column"] == S.NSFW_SCORE)
    assert nsfw["thresholds"][0]["value"] == 0.2


def test_html_is_self_contained(report: tuple[Path, dict]) -> None:
    html = report[0].read_text()
    assert 'src="http' not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == 1 + 6 + 1 + 1  # funnel, scores, timing, words
    # thumbnails: 6 kept + coffee, blurred astronaut, rocket (the rest have no image)
    assert html.count("data:image/jpeg;base64,") == 9
    assert "rejected: shard:missing_image" in html and "../../etc/passwd.x/..jpg" in html


def test_report_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no stage has a done shard"):
        write_report(tmp_path)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_screenshot_in_headless_chromium(report: tuple[Path, dict], tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        "--window-size=1280,4000",
    ]
    subprocess.run(
        [str(CHROMIUM), *flags, report[0].as_uri()], capture_output=True, timeout=60, check=True
    )
    assert png.is_file()
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (4000, 1280)
    assert pixels.std() > 20  # not blank: plots and photos on a white page
    assert (pixels < 128).mean() > 0.02
