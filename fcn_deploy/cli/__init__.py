"""The ``fcn-deploy`` command line, one module per command family: training (pretrain, train,
reproduce), export (export, quant-report, build, export-triton), inference (predict, eval,
info, segment-dataset), bench (bench, load-test) and serve. Commands only parse options and
print; the work is in tasks/, exporters/, benchmarks/ and serving/, callable from Python."""
from . import training, inference, export, bench, serve  # noqa: F401, I001  (help order)
from .app import app, main

__all__ = ["app", "main"]
