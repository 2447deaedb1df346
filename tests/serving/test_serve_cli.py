"""`fcn-deploy serve`'s bad options: one `error:` line before any server starts."""
import pytest
from helpers import assert_one_line_error, run


@pytest.mark.parametrize("option", ["--http-port", "--grpc-port", "--metrics-port"])
def test_port_out_of_range(tiny_onnx, option):
    assert_one_line_error(run("serve", tiny_onnx, option, "70000"), option, code=2)


@pytest.mark.parametrize("buckets", ["64x", "axb", ",", "0x64"])
def test_malformed_buckets(tiny_onnx, buckets):
    assert_one_line_error(run("serve", tiny_onnx, "--buckets", buckets), "--buckets", code=2)


def test_missing_artifact(tmp_path):
    assert_one_line_error(run("serve", tmp_path / "nope.onnx"), "nope.onnx", "does not exist")


def test_bad_name_and_repeated_ports(tiny_onnx):
    assert_one_line_error(run("serve", tiny_onnx, "--name", "a/b"), "--name", code=2)
    assert_one_line_error(run("serve", tiny_onnx, "--http-port", "9000", "--grpc-port", "9000"),
                          "must differ", code=2)


def test_serve_listens_on_loopback_unless_told_and_says_what_is_exposed():
    from fcn_deploy.serving.server import ServeOptions, endpoints, exposure

    assert "--host" in run("serve", "--help").output and "127.0.0.1" in run(
        "serve", "--help").output
    assert ServeOptions("m").host == "127.0.0.1"
    lines = endpoints(ServeOptions("m"), ["m"])
    assert lines[-1].startswith("exposed: this machine only (loopback)")
    for host in ("127.0.0.1", "::1", "localhost"):
        assert exposure(host).startswith("exposed: this machine only")
    for host, where in (("0.0.0.0", "every interface"), ("::", "every interface"),
                        ("10.1.2.3", "10.1.2.3")):
        line = exposure(host)
        assert line.startswith(f"warning: listening on {where}: ") and "TLS" in line


def test_a_repository_is_refused_in_one_line_where_it_cannot_be_served(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run("serve", empty), "holds no Triton model", "export-triton")
    (tmp_path / "ort" / "m").mkdir(parents=True)
    (tmp_path / "ort" / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "onnxruntime"\n')
    assert_one_line_error(run("serve", tmp_path / "ort"), "onnxruntime backend",
                          "--backend python")
    assert_one_line_error(run("serve", tmp_path / "ort", "--buckets", "64", "--threads", "2"),
                          "--buckets, --threads: a repository's config.pbtxt decides", code=2)


def test_a_taken_port_is_waited_for_then_refused_in_one_line():
    import socket
    import threading

    from fcn_deploy.errors import FcnDeployError
    from fcn_deploy.serving.server import check_ports
    from fcn_deploy.serving.tritonserver import free_ports

    port, other = free_ports(2)
    held = socket.socket()
    held.bind(("127.0.0.1", port))
    held.listen()
    said = []
    with pytest.raises(FcnDeployError, match=f"cannot listen on 127.0.0.1:{port}: "):
        check_ports("127.0.0.1", [port, other], wait_s=1.0, log=said.append)
    assert len(said) == 1 and "waiting up to 1 s" in said[0]
    threading.Timer(0.5, held.close).start()  # a stopping server lets go of it
    check_ports("127.0.0.1", [port, other], wait_s=10.0, log=said.append)
