"""The driver side: config, the Dask runner and cluster, progress, CLI, reports, the demo."""
