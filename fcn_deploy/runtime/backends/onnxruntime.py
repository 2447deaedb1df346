"""onnxruntime on the CPU: the default runtime of ONNX files (installed with fcn-deploy)."""
from fcn_deploy.runtime.registry import Backend


def _open(path, device, options, log):
    from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # numpy; onnxruntime on load

    return OrtSegmenter(path, ("cpu",), **options)


BACKEND = Backend(
    name="onnxruntime", kinds=("onnx",), devices=("cpu",), open=_open,
    requires=("onnxruntime",), order=20, options=("threads",),
    capabilities=frozenset({"uint8_frames"}),
    summary="onnxruntime's CPU execution provider (the default for ONNX files on CPUs)")


def execution_provider(name: str, providers: tuple[str, ...], provider: str, order: int,
                       summary: str, needs: str) -> Backend:
    """A backend running ONNX files on a GPU through onnxruntime's ``providers`` (names as
    OrtSegmenter takes them, fallbacks after the first), whose ``provider`` (onnxruntime's
    name of the first) onnxruntime-gpu must offer; ``needs`` says what installs it."""
    def open_(path, device, options, log):
        from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # numpy; onnxruntime on load

        return OrtSegmenter(path, providers, **options)

    def check() -> str | None:
        import onnxruntime  # only asked when listing what runs here

        if provider not in onnxruntime.get_available_providers():
            return f"onnxruntime {onnxruntime.__version__} here has no {provider}: {needs}"
        return None

    return Backend(name=name, kinds=("onnx",), devices=("cuda",), open=open_,
                   requires=("onnxruntime",), extra="gpu", order=order, options=("threads",),
                   check=check, capabilities=frozenset({"uint8_frames"}), summary=summary)
