"""Config validation: one-line errors naming the key, overrides, CLI exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ConfigError, apply_overrides, load_config
from pipeline.demo import DEMO_CONFIG
from stages import STAGES


def write(tmp: Path, text: str) -> Path:
    path = tmp / "cfg.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_demo_config_is_valid() -> None:
    config = load_config(DEMO_CONFIG)
    assert config.stages == list(STAGES)  # the demo runs every registered stage
    assert config.stage_config("candidates").shard_size == 12  # type: ignore[attr-defined]


def test_unknown_key_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: r\ncandidates:\n  shard_sise: 5\n")
    assert error_of(path) == f"config error in {path}: candidates.shard_sise: unknown key"


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: r\ndownload:\n  timeout_s: soon\n")
    message = error_of(path)
    assert message.startswith(
        f"config error in {path}: download.timeout_s: Input should be a valid integer"
    )
    assert "'soon'" in message


def test_missing_input_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"run_dir: r\ncandidates:\n  input: ['{tmp_path}/nope.parquet']\n")
    assert error_of(path) == (
        f"config error in {path}: candidates.input: no file matches '{tmp_path}/nope.parquet'"
    )


def test_unknown_stage_and_missing_run_dir(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "stages: [candidates, fliter]\n"))
    assert "run_dir: required key is missing" in message
    assert "stages: unknown stage(s) ['fliter']" in message


def test_bad_value_range(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "run_dir: r\nrunner:\n  on_shard_error: ignore\n"))
    assert "runner.on_shard_error: Input should be 'fail' or 'skip'" in message


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: r\n")
    config = load_config(
        path,
        [
            "download.timeout_s=3",
            "candidates.prefilter.min_width_px=64",
            "runner.on_shard_error=skip",
            "stages=[download, candidates]",
        ],
    )
    assert config.stage_config("download").timeout_s == 3  # type: ignore[attr-defined]
    assert config.stage_config("candidates").prefilter.min_width_px == 64  # type: ignore[attr-defined]
    assert config.runner.on_shard_error == "skip"
    assert config.stages == ["candidates", "download"]  # pipeline order, whatever was given
    assert error_of(path, "download.timeout_s=0").startswith(
        f"config error in {path}: download.timeout_s: Input should be greater than or equal to 1"
    )


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        apply_overrides({}, ["download.timeout_s"])
    with pytest.raises(ConfigError, match="'run_dir' is not a section"):
        apply_overrides({"run_dir": "r"}, ["run_dir.x=1"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("run_dir: r\ncandidates: {shard_sise: 5}\n", "candidates.shard_sise: unknown key"),
        ("run_dir: r\ndownload: {timeout_s: soon}\n", "download.timeout_s: Input should be"),
        ("run_dir: r\ncandidates: {input: [/no/such.parquet]}\n", "no file matches"),
        ("run_dir: [unclosed\n", "not valid YAML"),
    ],
)
def test_cli_validate_one_line_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    assert main(["validate", str(write(tmp_path, text))]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("laionface validate: config error")
    assert fragment in lines[0]
    assert captured.out == ""


def test_cli_validate_ok_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(DEMO_CONFIG)]) == 0
    assert "ok (stages: candidates, download, filter" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface validate: config file {tmp_path / 'none.yaml'} does not exist"
    )


def test_cli_run_refuses_unknown_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(DEMO_CONFIG), "--set", f"run_dir={tmp_path / 'run'}", "--stages", "fliter"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface run: --stages ['fliter']: not in this config's stages {list(STAGES)}"
    )
    assert not (tmp_path / "run").exists()  # refused before any work
