"""Training objectives, one per file; the registry lives in `proxt2i.OBJECTIVES`."""
