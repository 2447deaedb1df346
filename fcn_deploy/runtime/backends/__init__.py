"""One module per backend, each declaring ``BACKEND`` (runtime/registry.py reads them all);
a module imports nothing heavy at its top: the implementation is imported when a model opens."""
