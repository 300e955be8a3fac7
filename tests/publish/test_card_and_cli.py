"""The dataset card's contents, and the report/takedown CLI handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.publish_cli import add_commands
from tests.publish.synthetic import sid


def test_card_contents(published_run: Path) -> None:
    card = (published_run / "shards" / "README.md").read_text()
    assert card.startswith("# Synthetic faces\n")
    assert "- samples: 6 in 3 tars (0.5 MB)" in card
    assert "| candidates | 12 | 11 | 1 |" in card and "| shard | 7 | 6 | 1 |" in card
    for reason in ("candidates:invalid_url", "face_count:zero", "shard:missing_image"):
        assert f"| `{reason}` | 1 |" in card
    assert "| attributes (prompt v1) | 6 |" in card
    assert "min_sharpness: 50.0" in card and "max_score: 0.2" in card
    assert "| unknown | 3 |" in card and "| cc-by-4.0 | 2 |" in card
    assert "| public-domain | 1 |" in card
    assert "- webdataset: 0.2.111" in card and "git revision: `abc`" in card
    assert 'wds.WebDataset("{00000..00002}.tar"' in card
    assert 'wids.ShardListDataset("wids-index.json")' in card
    assert 'load_dataset("webdataset"' in card


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_report_command(
    published_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(["report", str(published_run), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"report: {tmp_path / 'r.html'}",
        f"numbers: {tmp_path / 'r.json'}",
    ]


def test_takedown_command(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{sid('a1')}\n")
    assert _main(["takedown", str(run_copy), "--list", str(listing)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (record,) = (run_copy / "takedowns").glob("2*.json")
    assert lines == [
        "takedown: 1 listed sample(s) in this run, 1 removed from the published shards",
        "  rebuilt: 00001.tar",
        "  deleted (emptied): -",
        "  untouched: 2 tar(s)",
        f"  {sid('a1')}: removed from caption/00000.parquet, download/00000.tar, "
        "filter/00000.parquet, shard/_global/parts/00000.parquet, shards/00001.parquet, "
        "shards/00001.tar",
        f"  record: {record}",
    ]
