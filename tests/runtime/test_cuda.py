"""The cuda-python helpers under the TensorRT runtime, checked on a GPU without TensorRT."""
import importlib.util

import numpy as np
import pytest
from helpers import gpu_usable

from fcn_deploy.errors import FcnDeployError

has_bindings = importlib.util.find_spec("cuda") is not None and \
    importlib.util.find_spec("cuda.bindings") is not None


@pytest.mark.skipif(not has_bindings or gpu_usable(), reason="checks the no-GPU message")
def test_no_gpu_is_one_clear_error():
    from fcn_deploy.runtime import cuda

    with pytest.raises(FcnDeployError, match="needs a CUDA GPU"):
        cuda.require_gpu("running the test engine")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_usable(), reason="no CUDA GPU usable through cuda-python")
def test_buffers_events_and_graphs_round_trip():
    from fcn_deploy.runtime import cuda

    rt = cuda.runtime()
    stream = cuda.cuda_call(rt.cudaStreamCreate())
    a, b = cuda.Buffer(1 << 20), cuda.Buffer(1 << 20)
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 50), dtype=np.float32)
    a.to_device(x, stream)
    np.testing.assert_array_equal(a.to_host(x.shape, np.float32, stream), x)

    def copy_a_to_b():
        cuda.cuda_call(rt.cudaMemcpyAsync(b.device, a.device, x.nbytes,
                                          rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream))
    graph = cuda.capture_graph(stream, copy_a_to_b)
    ms = cuda.EventTimer(stream).time(lambda: cuda.cuda_call(rt.cudaGraphLaunch(graph, stream)))
    assert ms > 0
    np.testing.assert_array_equal(b.to_host(x.shape, np.float32, stream), x)
    with pytest.raises(cuda.CudaError, match="cudaErrorInvalidDevice"):
        cuda.cuda_call(rt.cudaSetDevice(999))
    a.free()
    b.free()
