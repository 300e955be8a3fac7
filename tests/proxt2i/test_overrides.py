"""The --set grammar proxt2i shares with the pipeline (manifests/overrides.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.overrides import apply_overrides
from pipeline.config import ConfigError as PipelineConfigError
from proxt2i.config import ConfigError, load_config

TRAIN = Path(__file__).parents[2] / "configs" / "proxt2i-cpu.yaml"


def test_sections_list_items_and_yaml_values() -> None:
    tree = {"objectives": [{"type": "prox_matching"}, {"type": "eps_mse"}], "steps": 1}
    out = apply_overrides(
        tree,
        ["objectives.1.t_min=0.01", "objectives.0=prox_matching", "optim.lr=0.0001", "x=[1, 2]"],
    )
    assert out == {
        "objectives": ["prox_matching", {"type": "eps_mse", "t_min": 0.01}],
        "steps": 1,
        "optim": {"lr": 0.0001},
        "x": [1, 2],
    }
    assert tree == {"objectives": [{"type": "prox_matching"}, {"type": "eps_mse"}], "steps": 1}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("steps", "--set 'steps': expected section.key=value"),
        ("=1", "--set '=1': expected section.key=value"),
        ("steps.x=1", "--set 'steps.x=1': 'steps' is not a section"),
        (
            "objectives.2.t_min=1",
            "--set 'objectives.2.t_min=1': '2' is not an index of a list of 2 item(s)",
        ),
        (
            "objectives.first=1",
            "--set 'objectives.first=1': 'first' is not an index of a list of 2 item(s)",
        ),
        (
            "optim.lr=[1",
            "--set 'optim.lr=[1': the value is not valid YAML (while parsing a flow "
            "sequence in \"<unicode string>\", line 1, column 1: [1 ^ expected ',' or ']', but got "
            "'<stream end>' in \"<unicode string>\", line 1, column 3: [1 ^)",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_it(item: str, message: str) -> None:
    tree = {"objectives": [{"type": "prox_matching"}, {"type": "eps_mse"}], "steps": 1}
    with pytest.raises(ConfigError) as caught:
        apply_overrides(tree, [item])
    assert str(caught.value) == message


def test_training_configs_speak_the_pipelines_error_style() -> None:
    assert ConfigError is PipelineConfigError  # one error type for every laionface subcommand
    with pytest.raises(ConfigError) as caught:
        load_config(TRAIN, ["optim.lrr=0.1", "data.batch_size=none"])
    assert str(caught.value) == (
        f"config error in {TRAIN}: data.batch_size: Input should be a valid integer, unable to "
        "parse string as an integer (got 'none'); optim.lrr: unknown key"
    )
