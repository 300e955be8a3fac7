"""proxt2i: see the package modules."""
