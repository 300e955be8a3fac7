"""The run model: column schema, run layout, atomic Parquet manifests, shard reports."""

from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports

__all__ = ["RunLayout", "ShardReport", "merge_reports"]
