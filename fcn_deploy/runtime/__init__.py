"""Running ONNX files and TensorRT engines behind one ``Segmenter`` interface (``base``), with
numpy and the backend's own library only (no torch). ``fcn_deploy.segmenters.open_segmenter``
picks the backend from an artifact's content, checkpoints (torch) included. Nothing is
imported here, so the CLI can read the TensorRT profile defaults without loading numpy."""
