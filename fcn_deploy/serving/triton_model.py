"""The ``model.py`` of the Triton model ``fcn-deploy serve`` writes (server.write_repository);
it runs only inside Triton's Python backend stub, one process per model instance.

The image input allows ragged batches, so Triton's dynamic batcher hands one ``execute`` the
requests of every size that arrived within the queue delay. Each request is checked alone and
a bad one gets its own one-line error (HTTP 400); the good ones are padded to their shape
buckets (sizes whose labels padding would change run unpadded: buckets.PaddingGuard) and run as
one batch per bucket; when such a run fails, its requests run one by one, so that a request
the runtime cannot take fails alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fcn_deploy.exporters.triton_python_model import failure
from fcn_deploy.runtime import memory
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.serving.buckets import (
    BadImageError,
    Bucket,
    PaddingGuard,
    bucket_for,
    fill_colour,
    run_bucketed,
)
from fcn_deploy.serving.server import REFUSED, batch_fn, runtime_options


class TritonPythonModel:
    """Serves the artifact its config names through fcn_deploy's runtime."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        # (an empty value comes as {} where the JSON leaves out protobuf defaults)
        params = {k: v.get("string_value", "") for k, v in config["parameters"].items()}
        options = runtime_options(params)
        self.segmenter = open_segmenter(Path(params["artifact"]), **options).load()
        self.max_batch = config["max_batch_size"]
        self.buckets = [Bucket(*b) for b in json.loads(params["serve_buckets"])]
        self.max_memory = int(params["max_memory"]) if params["max_memory"] else None
        self.whole = batch_fn(self.segmenter)
        self.fill = fill_colour(self.segmenter.meta)
        self.pads = PaddingGuard(self.run, self.fill)
        # the family must outlive its metric, or incrementing it fails
        self.family = pb_utils.MetricFamily(
            name=REFUSED, description="Requests answered with an error (HTTP 400 or 500)",
            kind=pb_utils.MetricFamily.COUNTER)
        self.refused = self.family.Metric(labels={"model": config["name"]})
        self.outputs = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
                        for o in config["output"]}

    def execute(self, requests: list) -> list:
        responses = self.responses(requests)
        self.refused.increment(sum(r.has_error() for r in responses))
        return responses

    def responses(self, requests: list) -> list:
        """A response for each request, an error one where it cannot be answered."""
        responses, jobs = [None] * len(requests), []
        for i, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            try:  # Triton checked dtype and rank; sizes and memory are ours to check
                for image in images:
                    self.check(*image.shape[:2])
            except BadImageError as e:
                responses[i] = failure(str(e), pb_utils.TritonError.INVALID_ARG)
                continue
            jobs.append((i, images))
        self.answer(jobs, responses)
        return responses

    def check(self, h: int, w: int) -> None:
        """BadImageError unless an H x W image fits a bucket and, alone, the memory budget."""
        need = self.need(1, bucket_for(h, w, self.buckets, self.max_batch))
        if need is None:  # nothing to check: the budget's files are not read
            return
        limit, what = memory.budget(self.max_memory)
        if limit is not None and need > memory.HEADROOM * limit:
            raise BadImageError(
                f"image {h}x{w} needs ~{memory.fmt_bytes(need)}, more than this server's "
                f"memory budget ({what} {memory.fmt_bytes(limit)}): send a smaller image, or "
                "serve with a larger --max-memory")

    def need(self, n: int, bucket: Bucket) -> int | None:
        """Estimated peak host bytes of N images run as ``bucket`` (None: unknown, or a GPU's
        memory, which an engine's profiles bound)."""
        if self.segmenter.device != "cpu":
            return None
        return memory.estimate_peak(self.segmenter.meta, n, bucket.height, bucket.width)

    def run(self, batch: np.ndarray) -> dict:
        """The outputs of a padded batch, run in halves while it exceeds the memory budget."""
        n, h, w = batch.shape[:3]
        need = self.need(n, Bucket(h, w, n)) if n > 1 else None
        limit = memory.budget(self.max_memory)[0] if need is not None else None
        if limit is None or need <= memory.HEADROOM * limit:
            return self.whole(batch)
        first, second = self.run(batch[:n // 2]), self.run(batch[n // 2:])
        return {name: np.concatenate([first[name], second[name]]) for name in first}

    def answer(self, jobs: list, responses: list) -> None:
        """Run ``jobs`` ((request index, images) pairs) as one bucketed batch; one by one when
        that fails, each failure its request's own error."""
        if not jobs:
            return
        images = [image for _, batch in jobs for image in batch]
        try:
            outputs = run_bucketed(self.run, images, self.buckets, self.fill, self.max_batch,
                                   self.pads)
        except Exception as e:  # any runtime failure answers its request(s), never the server
            if len(jobs) > 1:
                for job in jobs:
                    self.answer([job], responses)
                return
            responses[jobs[0][0]] = failure(f"{type(e).__name__}: {e}".splitlines()[0],
                                            pb_utils.TritonError.INTERNAL)
            return
        k = 0
        for i, batch in jobs:
            part, k = outputs[k:k + len(batch)], k + len(batch)
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(np.stack([p[name] for p in part]),
                                                           dtype))
                for name, dtype in self.outputs.items()])

    def finalize(self) -> None:
        self.segmenter.close()


