"""Samplers, one algorithm per file; the registry lives in `proxt2i.SAMPLERS`."""
