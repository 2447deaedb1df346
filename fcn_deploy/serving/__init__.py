"""Serving fcn-deploy artifacts on Triton Inference Server (the serve extra: PyTriton)."""
