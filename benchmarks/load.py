"""A load generator for any Triton endpoint serving an fcn-deploy model, reporting what
perf_analyzer would (which does not install here): throughput, p50/p90/p99 latency and
errors at each concurrency, with a mix of image sizes.

Each of ``concurrency`` client threads holds its own ``tritonclient.http`` client and sends
one request after another (closed loop, as perf_analyzer's concurrency mode does), cycling
through the images from a different start, until the request count or the time is spent.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn_deploy.atomic import check_outputs, write_texts
from fcn_deploy.errors import FcnDeployError

from .report import machine_line, markdown_table

LEVELS = (1, 2, 4, 8, 16)


@dataclass
class Endpoint:
    """A model on a Triton server: where it is and what its image input looks like."""

    url: str
    model: str
    input: str = "image"
    batched: bool = True   # the input has a leading batch dimension (max_batch_size > 0)

    @classmethod
    def probe(cls, url: str, model: str) -> "Endpoint":
        """Ask the server for the model's input (one UINT8 image input); FcnDeployError when
        the server or model is not there or takes something else."""
        import tritonclient.http as http  # the triton extra: only when a server is driven

        try:
            client = http.InferenceServerClient(url)
            meta = client.get_model_metadata(model)
            config = client.get_model_config(model)
        except Exception as e:  # connection refused, unknown model: tritonclient's own types
            raise FcnDeployError(f"cannot reach model {model!r} at {url}: {e}") from None
        inputs = meta["inputs"]
        if len(inputs) != 1 or inputs[0]["datatype"] != "UINT8":
            raise FcnDeployError(f"{model} at {url} takes {inputs}, not one UINT8 image")
        return cls(url, model, inputs[0]["name"], config.get("max_batch_size", 0) > 0)

    def request(self, client, image: np.ndarray):
        """One inference of ``image`` (H x W x 3 uint8); the labels it returns."""
        import tritonclient.http as http  # the triton extra: only when a server is driven

        x = image[None] if self.batched else image
        tensor = http.InferInput(self.input, list(x.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(x))
        result = client.infer(self.model, [tensor],
                              outputs=[http.InferRequestedOutput("labels")])
        labels = result.as_numpy("labels")
        return labels[0] if self.batched else labels


def run_level(endpoint: Endpoint, images: list[np.ndarray], concurrency: int,
              requests: int = 64, seconds: float = 30.0) -> dict:
    """``requests`` requests (or as many as ``seconds`` allow) from ``concurrency`` clients;
    throughput, latency percentiles (also of the first and the last quarter of the requests,
    in the order they finished: does a long run drift?) and errors."""
    import tritonclient.http as http  # the triton extra: only when a server is driven

    lock, latencies, errors = threading.Lock(), [], []
    sent = iter(range(requests))
    deadline = time.perf_counter() + seconds

    def client_loop(start: int):
        client = http.InferenceServerClient(endpoint.url, connection_timeout=seconds,
                                            network_timeout=seconds)
        k = start
        while time.perf_counter() < deadline:
            with lock:
                if next(sent, None) is None:
                    return
            t = time.perf_counter()
            try:
                endpoint.request(client, images[k % len(images)])
                with lock:
                    latencies.append(time.perf_counter() - t)  # in the order they finish
            except Exception as e:  # a failed request is counted, the load goes on
                with lock:
                    errors.append(str(e).splitlines()[0])
            k += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = 1000 * np.asarray(latencies) if latencies else np.zeros(1)
    quarter = max(1, len(ms) // 4)
    return {"concurrency": concurrency, "requests": len(latencies) + len(errors),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": wall, "throughput": len(latencies) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)),
            "p99_first_quarter_ms": float(np.percentile(ms[:quarter], 99)),
            "p99_last_quarter_ms": float(np.percentile(ms[-quarter:], 99))}


def sweep(endpoint: Endpoint, images: list[np.ndarray], levels=LEVELS, requests: int = 64,
          seconds: float = 30.0, log=print) -> list[dict]:
    """``run_level`` at each concurrency, logging a line per level."""
    rows = []
    for level in levels:
        row = run_level(endpoint, images, level, requests, seconds)
        log(f"concurrency {level}: {row['throughput']:.2f} infer/s, p50 {row['p50_ms']:.0f} ms, "
            f"p90 {row['p90_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
            f"{row['errors']} errors of {row['requests']}")
        rows.append(row)
    return rows


def mixed_images(sizes: list[tuple[int, int]], per_size: int = 2, seed: int = 0):
    """Synthetic scenes, ``per_size`` of each H x W in ``sizes``, interleaved by size."""
    from fcn_deploy.data.synthetic import SyntheticShapes  # numpy: the scene generator

    side = max(max(hw) for hw in sizes)
    scenes = SyntheticShapes("val", per_size * len(sizes), side, seed)
    return [scenes[i * len(sizes) + k][0][:h, :w]
            for i in range(per_size) for k, (h, w) in enumerate(sizes)]


def markdown(result: dict) -> str:
    """The sweep as a table under one line naming the endpoint, the image mix and machine."""
    head = (f"# Load: {result['model']} at {result['url']}\n\nImages: "
            f"{', '.join(result['sizes'])} (cycled); up to {result['requests']} requests or "
            f"{result['seconds']:g} s per level; client machine: "
            f"{machine_line(result['machine'])}\n")
    table = markdown_table(result["rows"], [
        ("concurrency", "concurrency", "{}"), ("throughput", "infer/s", "{:.2f}"),
        ("p50_ms", "p50 ms", "{:.0f}"), ("p90_ms", "p90 ms", "{:.0f}"),
        ("p99_ms", "p99 ms", "{:.0f}"), ("p99_first_quarter_ms", "p99 first 1/4", "{:.0f}"),
        ("p99_last_quarter_ms", "p99 last 1/4", "{:.0f}"), ("requests", "requests", "{}"),
        ("errors", "errors", "{}")])
    return f"{head}\n{table}\n"


def write_report(result: dict, out: Path) -> list[Path]:
    """``load.json`` and ``load.md`` in ``out``, each written atomically."""
    return write_texts({out / "load.json": json.dumps(result, indent=2),
                        out / "load.md": markdown(result)})


def load_test(url: str, model: str, out: Path, sizes: list[tuple[int, int]],
              levels: list[int], requests: int = 64, seconds: float = 30.0,
              log=print) -> tuple[dict, list[Path]]:
    """``fcn-deploy load-test``: the sweep of ``model`` at ``url`` over ``levels`` with images
    of ``sizes``, written to ``out``; (the result, the files written). FcnDeployError after
    writing when requests failed."""
    from .machine import machine_info  # numpy; torch when installed

    check_outputs([], [out / "load.json", out / "load.md"])
    endpoint = Endpoint.probe(url, model)
    rows = sweep(endpoint, mixed_images(sizes), levels, requests, seconds, log=log)
    result = {"url": url, "model": model, "sizes": [f"{h}x{w}" for h, w in sizes],
              "requests": requests, "seconds": seconds, "rows": rows,
              "machine": machine_info(threads=max(levels))}
    written = write_report(result, out)
    for path in written:
        log(f"wrote {path}")
    failed = sum(r["errors"] for r in rows)
    if failed:
        first = next((r["first_error"] for r in rows if r["first_error"]), "")
        raise FcnDeployError(f"{failed} requests failed (first: {first})")
    return result, written
