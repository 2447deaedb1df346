"""The artifact contract: what a file is (by content), the metadata every artifact carries,
and how it is read from safetensors headers, ONNX ``metadata_props`` and engine sidecars.
Needs neither torch nor onnx."""
