"""Errors the CLI reports as one clear line (no traceback unless --verbose)."""


class FcnDeployError(Exception):
    """Base class: a user-facing problem with input, artifacts or options."""


class DataError(FcnDeployError):
    """A data set file is missing, corrupt or inconsistent; the message names the file."""


class CheckpointError(FcnDeployError):
    """A checkpoint is missing, corrupt, or does not fit the architecture."""


class ArtifactError(FcnDeployError):
    """An ONNX model or engine is missing, corrupt, or lacks fcn-deploy metadata."""


class ExportError(FcnDeployError):
    """An export or build failed, or its verification did not pass."""


class OptionError(FcnDeployError):
    """An option value or combination the command cannot take: a usage error (exit 2)."""


def message_line(error: BaseException, last: bool = False) -> str:
    """The first (or last) non-empty line of an exception's message, at most 200 characters;
    its type's name when the message is empty: other libraries' errors in one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1 if last else 0] if lines else type(error).__name__)[:200]
