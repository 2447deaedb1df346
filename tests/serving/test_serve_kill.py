"""`fcn-deploy serve` killed outright (SIGKILL) while clients are in flight: each client gets an
error within its network timeout, not a hang, and the server started again on the same ports
answers the same labels."""
import signal
import threading
import time
from contextlib import closing

import numpy as np
import pytest

from fcn_deploy.runtime.factory import open_segmenter

http = pytest.importorskip("tritonclient.http")
TIMEOUT_S = 10  # the clients' network timeout (tritonclient's default is 60 s)


def _infer(url: str, name: str, image: np.ndarray) -> np.ndarray:
    inp = http.InferInput("image", [1, *image.shape], "UINT8")
    inp.set_data_from_numpy(image[None])
    with closing(http.InferenceServerClient(url, connection_timeout=TIMEOUT_S,
                                            network_timeout=TIMEOUT_S)) as client:
        return client.infer(name, [inp]).as_numpy("labels")[0]


def test_clients_in_flight_get_errors_and_the_restart_answers(tiny_onnx, tmp_path, launch):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    server = launch(tiny_onnx, tmp_path / "first", "--threads", "1")
    ports = (server.http_port, server.grpc_port, server.metrics_port)
    outcomes: list[tuple[str, float]] = []

    def client() -> None:
        while True:
            start = time.monotonic()
            try:
                _infer(server.url, server.name, image)
            except Exception as e:  # the server went away: what the client sees, and when
                outcomes.append((type(e).__name__, time.monotonic() - start))
                return

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(1.0)  # requests in flight
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    for t in clients:
        t.join(TIMEOUT_S + 20)
    assert not any(t.is_alive() for t in clients), "a client hung"
    print(f"clients in flight at the kill: {outcomes}")
    assert len(outcomes) == 4 and all(s <= TIMEOUT_S + 5 for _, s in outcomes), outcomes
    again = launch(tiny_onnx, tmp_path / "second", "--threads", "1", ports=ports)
    try:
        labels = _infer(again.url, again.name, image)
    finally:
        assert again.stop() == 0
    with open_segmenter(tiny_onnx, threads=1) as seg:
        assert np.array_equal(labels, seg.predict(image[None])[0])
