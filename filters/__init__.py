"""filters: see the package modules."""
