"""captioners: see the package modules."""
