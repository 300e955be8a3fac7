"""The dataset card ``RUN/shards/README.md``: what the corpus is, how it was made, how to load it.

Everything on the card is read from the run: the funnel from the stages' done-marker reports
(the shard stage's own counts from its manifest function, so the card is right before its
tasks ran and after every takedown), models and thresholds from the run record of the
invocation that produced the shards (``run.json``), licences and caption provenance from the
published indexes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow.parquet as pq
import yaml

from manifests import schema as S
from manifests.io import read_stage_reports
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from manifests.run_record import RunRecord, producing_record
from stages.candidates import EXCLUDED_BY_INCLUDE
from stages.names import CAPTION, DEDUP, FILTER
from stages.shard.plan import (
    NAME,
    SOURCE_STAGES,
    read_assignment,
    read_takedown_register,
    shard_manifest,
)
from stages.shard.subsets import read_subset_list, subset_list_name, subset_wids_name, subsets
from stages.shard.writer import OutShard, index_name, publish_dir


def funnel(layout: RunLayout) -> list[ShardReport]:
    """Merged report of every upstream stage that ran, then the shard stage's."""
    record = producing_record(layout, NAME)
    config = record.config if record is not None else {}
    names = [s for s in config.get("stages", SOURCE_STAGES) if s != NAME]
    reports = [merge_reports(s, read_stage_reports(layout, s)) for s in names]
    reports = [r for r in reports if r.shards]
    assignment, removed = read_assignment(layout), read_takedown_register(layout)
    own = [shard_manifest(layout, s, assignment, removed)[1] for s in layout.done_shards(CAPTION)]
    return [*reports, merge_reports(NAME, own)]


def _funnel_md(reports: list[ShardReport]) -> list[str]:
    excluded = sum(int(r.counters.get(EXCLUDED_BY_INCLUDE, 0)) for r in reports)
    lines = [f"Input rows left out by the include lists (not candidates): {excluded}", ""]
    lines = lines if excluded else []
    lines += ["| stage | in | kept | dropped |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r.stage} | {r.n_in} | {r.n_out} | {r.n_dropped} |" for r in reports]
    lines += ["", "| reject reason | samples |", "| --- | ---: |"]
    for r in reports:
        for why, n in sorted(r.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"| `{why}` | {n} |")
    return lines


def _published_counts(layout: RunLayout, shards: list[OutShard]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {"license": Counter(), "caption": Counter()}
    for shard in shards:
        cols = [S.LICENSE, S.CAPTION_MODEL, S.CAPTION_PROMPT_VERSION]
        table = pq.read_table(publish_dir(layout) / index_name(shard.name), columns=cols)
        counts["license"].update(v or "unknown" for v in table[S.LICENSE].to_pylist())
        counts["caption"].update(
            f"{m or 'unknown'} (prompt {p or 'unknown'})"
            for m, p in zip(
                table[S.CAPTION_MODEL].to_pylist(),
                table[S.CAPTION_PROMPT_VERSION].to_pylist(),
                strict=True,
            )
        )
    return counts


def _counter_md(title: str, counter: Counter[str]) -> list[str]:
    lines = [f"| {title} | samples |", "| --- | ---: |"]
    lines += [f"| {k} | {n} |" for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines if counter else ["(none published)"]


def _yaml_block(data: Any) -> list[str]:
    text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip()
    return ["```yaml", text, "```"]


_LOADING = """\
```python
import webdataset as wds                      # streaming, shuffled training
ds = (wds.WebDataset("{{00000..{last:05d}}}.tar", shardshuffle=True)
      .shuffle(1000).decode("pil").to_tuple("jpg", "txt", "json"))

import wids                                   # indexed access, exact epochs
ds = wids.ShardListDataset("wids-index.json")
sample = ds[0]                                # {{".jpg": ..., ".txt": ..., ".json": ...}}

from datasets import load_dataset             # Hugging Face datasets
ds = load_dataset("webdataset", data_files={{"train": "*.tar"}}, split="train")
```

Verify the download first: `sha256sum -c SHA256SUMS`.
"""


def _summary(layout: RunLayout, shards: list[OutShard], dataset_name: str) -> list[str]:
    n_samples = sum(s.nsamples for s in shards)
    size_mb = sum(s.filesize for s in shards) / 1e6
    return [
        f"# {dataset_name}",
        "",
        "Human face images with fine-grained captions, rebuilt from LAION metadata: each",
        "candidate URL was downloaded, checked for faces and image quality, deduplicated and",
        "captioned. WebDataset tars: per sample `jpg` (the image), `txt` (the caption) and",
        "`json` (URL, alt text, licence, image size, face boxes, landmarks, scores, caption",
        "model and prompt version). Beside each tar: a same-named Parquet index.",
        "",
        f"- samples: {n_samples} in {len(shards)} tars ({size_mb:,.1f} MB)",
        "- files: `NNNNN.tar`, `NNNNN.parquet` (index), `wids-index.json`, `SHA256SUMS`",
        f"- takedown requests honoured: {len(read_takedown_register(layout))} samples",
    ]


def _subsets_md(layout: RunLayout, shards: list[OutShard]) -> list[str]:
    """One line per subset the corpus tags (``stages.shard.subsets``), with its files."""
    total = sum(s.nsamples for s in shards)
    lines = []
    for subset, tag in subsets().items():
        found = read_subset_list(publish_dir(layout), subset)
        if found is None:
            continue
        share = f"{100 * found['count'] / total:.1f}%" if total else "0%"
        lines.append(
            f"- `{subset}`: {found['count']} of {total} samples ({share}), tagged `{tag}` in "
            f"each json and index; `{subset_wids_name(subset)}` (its tars), "
            f"`{subset_list_name(subset)}` (sample ids and positions)"
        )
    if not lines:
        return []
    lead = "Subsets are tags on published samples, with their own index (no second copy):"
    return ["## Subsets", "", lead, "", *lines, ""]


def render_card(layout: RunLayout, shards: list[OutShard], dataset_name: str) -> str:
    """The card's Markdown text."""
    record = producing_record(layout, NAME) or RunRecord("none", "", {})
    config = record.config
    counts = _published_counts(layout, shards)
    lines = [
        *_summary(layout, shards, dataset_name),
        "",
        *_subsets_md(layout, shards),
        "## Funnel",
        "",
        *_funnel_md(funnel(layout)),
        "",
        "## Captions",
        "",
        *_counter_md("caption model (prompt version)", counts["caption"]),
        "",
        *_yaml_block(config.get(CAPTION, {})),
        "",
        "## Face detector and thresholds",
        "",
        *_yaml_block({FILTER: config.get(FILTER, {}), DEDUP: config.get(DEDUP, {})}),
        "",
        "## Licences seen",
        "",
        *_counter_md("licence", counts["license"]),
        "",
        "## How to load",
        "",
        _LOADING.format(last=max(len(shards) - 1, 0)),
        "## Software",
        "",
        f"- config fingerprint: `{record.config_fingerprint}` (run `{record.run_id}`, "
        f"started {record.started_at or 'unknown'})",
        f"- git revision: `{record.git_revision}`",
        f"- manifest schema version: {record.schema_version or S.SCHEMA_VERSION}",
        *[f"- {k}: {v}" for k, v in sorted(record.packages.items())],
        "",
        "## Run configuration",
        "",
        *_yaml_block(config),
    ]
    return "\n".join(lines) + "\n"
