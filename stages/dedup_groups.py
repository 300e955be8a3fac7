"""Duplicate edges and groups for the dedup stage (pure pandas/numpy, run inside Dask tasks)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from filters.perceptual_hash import hamming_to_many, phash_to_uint64
from manifests import schema as S
from stages.names import DEDUP

_EDGE_COLUMNS = ["a", "b"]


def exact_edges(frame: pd.DataFrame) -> pd.DataFrame:
    """Star edges from the smallest sample_id of each sha256 group to every other member."""
    frame = frame[frame[S.DL_SHA256].notna()]
    edges: list[tuple[str, str]] = []
    for _, group in frame.groupby(S.DL_SHA256, sort=True):
        ids = sorted(group[S.SAMPLE_ID])
        edges.extend((ids[0], other) for other in ids[1:])
    return pd.DataFrame(edges, columns=_EDGE_COLUMNS, dtype=str)


def band_edges(frame: pd.DataFrame, max_hamming: int, max_group: int) -> pd.DataFrame:
    """Edges between rows that share a band value and lie within ``max_hamming`` bits."""
    edges: set[tuple[str, str]] = set()
    for _, group in frame.groupby("band", sort=True):
        group = group.drop_duplicates(S.SAMPLE_ID).sort_values(S.SAMPLE_ID).head(max_group)
        ids = group[S.SAMPLE_ID].tolist()
        hashes = group[S.PHASH].tolist()
        packed = phash_to_uint64(hashes)
        for i in range(len(ids) - 1):
            close = hamming_to_many(hashes[i], packed[i + 1 :]) <= max_hamming
            edges.update((ids[i], ids[i + 1 + j]) for j in close.nonzero()[0])
    return pd.DataFrame(sorted(edges), columns=_EDGE_COLUMNS, dtype=str)


@dataclass
class Groups:
    """Connected components of the duplicate graph, with the member each group keeps."""

    parent: dict[str, str]
    nodes: pd.DataFrame

    @classmethod
    def from_edges(cls, edges: pd.DataFrame, nodes: pd.DataFrame) -> Groups:
        groups = cls({}, nodes.set_index(S.SAMPLE_ID))
        for a, b in zip(edges["a"], edges["b"], strict=True):
            groups._union(str(a), str(b))
        return groups

    def _find(self, x: str) -> str:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def decisions(self) -> pa.Table:
        """Every grouped sample: its group's kept sample_id, shard, and its reason (or None)."""
        members: dict[str, list[str]] = {}
        for node in sorted(self.parent):
            members.setdefault(self._find(node), []).append(node)
        rows = []
        for group in members.values():
            keeper = min(group, key=self._rank)
            for sid in group:
                rows.append((sid, int(self.nodes.at[sid, S.SHARD]), keeper, self._why(sid, keeper)))
        ids, shards, keepers, reasons = zip(*rows, strict=True) if rows else ((), (), (), ())
        return pa.table(
            {
                S.SAMPLE_ID: pa.array(ids, pa.string()),
                S.SHARD: pa.array(shards, pa.int32()),
                S.DEDUP_GROUP: pa.array(keepers, pa.string()),
                S.REJECT_REASON: pa.array(reasons, pa.string()),
            }
        )

    def _rank(self, sid: str) -> tuple[float, str]:
        """Largest face first (unknown size last), then the smallest sample_id."""
        size = self.nodes.at[sid, S.FACE_SIZE_PX]
        return (-(float(size) if pd.notna(size) else -1.0), sid)

    def _why(self, sid: str, keeper: str) -> str | None:
        if sid == keeper:
            return None
        same = self.nodes.at[sid, S.DL_SHA256] == self.nodes.at[keeper, S.DL_SHA256]
        return S.reason(DEDUP, "exact" if same else "near")
