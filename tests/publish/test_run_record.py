"""run.json through its one typed reader: what the writers record reads back, validated; a
malformed record is a one-line error naming the file, in the library and on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manifests.layout import RunLayout
from manifests.run_record import RunRecordError, read_run_history
from pipeline.cli import main
from pipeline.config import validate_config
from tests.publish.synthetic import RUN_CONFIG, STAGES


def test_the_fixture_record_reads_back_as_written(published_run: Path) -> None:
    (record,) = read_run_history(RunLayout(published_run)).records
    assert (record.outcome, record.stages, record.git_revision) == ("ok", STAGES, "abc")
    assert record.finished_at == record.started_at
    # The recorded config is a validated one: validating it again changes nothing.
    again = validate_config(record.config, "run.json").model_dump(mode="json")
    assert again == record.config
    assert record.section("caption")["captioner"]["type"] == "attributes"
    assert record.section("filter")["chain"] == RUN_CONFIG["filter"]["chain"]


def _records(*records: object) -> str:
    return json.dumps({"format": "laionface-run-history/1", "records": list(records)})


GOOD = {"run_id": "r1", "started_at": "2026-01-01T00:00:00+00:00", "config": {}}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes: "
         "line 1 column 2 (char 1))"),
        ("[]", ": the top level must be an object, not list"),
        (json.dumps({"format": "laionface-run-history/1"}),
         ": 'records' must be a list of run records"),
        (_records(GOOD, {**GOOD, "run_id": 7}),
         ": record 1: run_id: Input should be a valid string"),
        (_records({"run_id": "r1", "config": {}}), ": record 0: started_at: Field required"),
        (_records({**GOOD, "fingerprints": {"filter": 3}}),
         ": record 0: fingerprints.filter: Input should be a valid string"),
        (_records("r1"), ": record 0: Input should be a dictionary or an instance of RunRecord"),
        (json.dumps({"config": ["a"]}), ": record 0: config: Input should be a valid dictionary"),
    ],
    ids=["json", "top", "records", "type", "missing", "nested", "not-a-record", "legacy"],
)  # fmt: skip
def test_a_malformed_run_json_is_one_line_naming_it(
    tmp_path: Path, text: str, problem: str
) -> None:
    layout = RunLayout(tmp_path)
    layout.run_json.write_text(text)
    with pytest.raises(RunRecordError) as err:
        read_run_history(layout)
    assert str(err.value) == f"{layout.run_json}{'' if problem.startswith(':') else ' '}{problem}"


def test_extra_keys_and_legacy_records_still_read(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    layout.run_json.write_text(_records({**GOOD, "added_later": 1, "stages": ["candidates"]}))
    (record,) = read_run_history(layout).records
    assert (record.run_id, record.stages, record.outcome) == ("r1", ("candidates",), "running")
    layout.run_json.write_text(json.dumps({"config": {"stages": ["candidates"]}}))
    (legacy,) = read_run_history(layout).records
    assert (legacy.run_id, legacy.outcome, legacy.config) == (
        "legacy", "unknown", {"stages": ["candidates"]},
    )  # fmt: skip


def test_the_cli_reports_a_malformed_record_in_one_line(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json = RunLayout(run_copy).run_json
    body = json.loads(run_json.read_text())
    del body["records"][0]["config"]
    run_json.write_text(json.dumps(body))
    assert main(["refilter", str(run_copy), "--set", "filter.face_size.min_px=100"]) == 2
    assert capsys.readouterr().err == (
        f"laionface refilter: {run_json}: record 0: config: Field required\n"
    )
