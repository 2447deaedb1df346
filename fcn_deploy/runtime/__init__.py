"""Running checkpoints, ONNX files and TensorRT engines behind one ``Segmenter`` interface
(``base``), each backend with numpy and its own library only (torch only for checkpoints).
``open_segmenter(path)`` picks the backend from the artifact's content. It is imported on
first use (PEP 562), so importing this package loads nothing: the CLI reads the TensorRT
profile defaults without numpy."""


def __getattr__(name: str):
    if name == "open_segmenter":
        from .factory import open_segmenter  # numpy: only when a model is opened

        return open_segmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
