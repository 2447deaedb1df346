"""Errors the CLI reports as one clear line (no traceback unless --verbose)."""


class FcnDeployError(Exception):
    """Base class: a user-facing problem with input, artifacts or options."""


class DataError(FcnDeployError):
    """A data set file is missing, corrupt or inconsistent; the message names the file."""


class CheckpointError(FcnDeployError):
    """A checkpoint is missing, corrupt, or does not fit the architecture."""
