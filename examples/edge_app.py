"""Edge app: segment a video (or a folder of images) and write an overlay video.

Needs only the runtime install with the video extra (numpy, onnxruntime, Pillow, PyAV; never
torch): ``pip install 'fcn-deploy[video]'``, plus ``[gpu]`` or ``[trt]`` for a GPU. Run:

    python examples/edge_app.py MODEL SOURCE -o overlay.mp4 [--threads N] [--depth 4]

MODEL: an ONNX file or a TensorRT engine. Export checkpoints first; ``fcn-deploy export CKPT
-o m.onnx --input rgb8 --output labels`` leaves the host the least work. SOURCE: a video file
or a folder of images. Frames flow grab -> [decode] -> infer -> blend -> write on worker
threads, at most --depth in flight, in order; the run ends with frames/s and each stage's mean
ms. A frame that fails is reported and skipped (exit code 1).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_deploy.atomic import check_outputs
from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.media.images import blend, collect_images, probe_image, read_image
from fcn_deploy.media.video import VideoReader, VideoWriter, is_video
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.pipeline import PipelineStats, Stage, run_pipeline
from fcn_deploy.wording import counted

HOST_WORK = {"rgb8": "uint8 frames go in as they are, the graph normalizes",
             "float": "the CPU normalizes each frame to float32 NCHW first"}


def timed(items, seconds: list):
    """Yield ``items``, appending to ``seconds`` how long each took to arrive (the grab)."""
    start = time.perf_counter()
    for item in items:
        seconds.append(time.perf_counter() - start)
        yield item
        start = time.perf_counter()


def overlay(frame_and_labels) -> np.ndarray:
    """0.5 * frame + 0.5 * class colours (visualize.blend, in integers)."""
    return blend(*frame_and_labels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="ONNX file or TensorRT engine")
    p.add_argument("source", type=Path, help="video file, or folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="overlay video (.mp4, ...)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: every core)")
    p.add_argument("--depth", type=int, default=4, help="frames in flight (default 4)")
    p.add_argument("--device", default="cpu", help="onnxruntime's: cpu or cuda (engines: GPU)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate for a folder source")
    args = p.parse_args(argv)
    if artifact_kind(args.model) == "checkpoint":  # loading one would need torch
        raise FcnDeployError(f"{args.model} is a training checkpoint; export it first: "
                             f"fcn-deploy export {args.model} -o model.onnx")
    images = [] if is_video(args.source) else collect_images([args.source])
    # the CLI's own check: the output never lands on the model, the video or one of the images
    check_outputs([args.model, args.source, *images], [args.output])

    with contextlib.ExitStack() as stack:
        resized = []
        if is_video(args.source):
            reader = stack.enter_context(VideoReader(args.source))
            items, size, fps, stages = reader, reader.size, reader.fps, []
        else:  # a video has one size: images of another are resized to the first one's
            items, fps = images, args.fps
            size = probe_image(items[0])[0]

            def decode(path: Path) -> np.ndarray:
                frame = read_image(path)
                if frame.shape[:2] != size:
                    resized.append(path.name)
                    frame = np.asarray(Image.fromarray(frame).resize(size[::-1]))
                return frame
            stages = [Stage("decode", decode, workers=2)]
        writer = VideoWriter(args.output, fps, size)  # checks the suffix before the model loads
        seg = stack.enter_context(open_segmenter(args.model, device=args.device,
                                                 threads=args.threads))
        fmt = seg.meta.input.format
        print(f"{args.model.name}: {seg.backend} on {seg.device}, {len(seg.meta.class_names)} "
              f"classes, input {fmt} ({HOST_WORK[fmt]}); {args.source.name}: "
              f"{size[0]}x{size[1]} at {fps:g} fps", flush=True)
        stages += [Stage("infer", lambda frame: (frame, seg.predict(frame[None])[0])),
                   Stage("blend", overlay, workers=2),
                   Stage("write", writer.write)]
        stack.enter_context(writer)  # the file appears only if the run gets to the end
        stats, grab = PipelineStats(), []
        for result in run_pipeline(timed(items, grab), stages, args.depth):
            result.seconds = {"grab": grab[result.index], **result.seconds}
            stats.add(result)
            if not result.ok:
                print(f"frame {result.index}: {result.error}", file=sys.stderr)
    if resized:  # said once, here: decode runs on two threads
        print(f"note: {counted(len(resized), 'image')} resized to {size[0]}x{size[1]} (the "
              f"first's size), e.g. {resized[0]}", file=sys.stderr)
    print(stats.summary())
    print(f"wrote {args.output} ({counted(stats.frames - stats.failed, 'frame')})")
    return 1 if stats.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FcnDeployError as e:
        sys.exit(f"error: {e}")
