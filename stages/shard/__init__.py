"""Stage ``shard`` and everything it owns: publishing the corpus and taking samples down.

- ``stage``: the stage itself (``ShardConfig``, ``ShardStage``);
- ``plan``: which sample goes to which output tar (the assignment), the per-input-shard
  manifest, the takedown register; ``writer``: the deterministic tar and index writer;
  ``records``: a sample's json and index row; ``publish``: the finished publication
  (``published.json``, wids index, checksums, card via ``card``, subsets via ``subsets``);
- ``takedown``: removing listed samples from a published run and from every cache of their
  bytes, with ``takedown_list`` (reading lists), ``takedown_purge`` (bytes) and
  ``takedown_retract`` (upstream manifests). ``laionface takedown`` is a thin command over it.

Nothing is imported here, so a stage that only needs the takedown register (``candidates``)
does not pull in the publisher.
"""
