"""One module per model family, each declaring ``FAMILY`` (models/catalog.py reads them all); a
module imports no torch at its top: its builders import it when they run."""
