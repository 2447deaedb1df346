"""Image and video files in and out: decoding any image mode to RGB, label PNGs and overlays,
video frames through PyAV."""
