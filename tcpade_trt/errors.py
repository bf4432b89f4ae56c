"""One exception base class: every user mistake the toolkit detects raises a subclass of it.

The CLI prints ``str(error)`` as one sentence and exits with status 2; library users catch
``TcpadeError``. Messages say what is wrong and how to fix it.
"""


class TcpadeError(Exception):
    """A problem the user can fix; the message says how."""


class UnsupportedModelError(TcpadeError):
    """The model is not one of the supported families."""


class ModelNotFoundError(TcpadeError):
    """The model name or folder cannot be resolved locally."""


class ShapeError(TcpadeError):
    """An input tensor has the wrong shape."""


class ConfigError(TcpadeError):
    """A configuration value is invalid."""


class BuildError(TcpadeError):
    """A build stage failed in a way the toolkit did not foresee (a bug here or in a library): the stage and the
    library's own words, the traceback in the log."""


class GenerationCancelled(TcpadeError):
    """A generation stopped between steps because its caller no longer wants it (e.g. a server's timeout)."""


class ManifestError(TcpadeError):
    """An engine folder is missing, corrupt or built for something else."""


def check_shape(name: str, tensor, expected: tuple) -> None:
    """Raise ShapeError unless ``tensor.shape`` matches ``expected`` (None entries match any size)."""
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        shown = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ShapeError(
            f"input '{name}' has shape {list(shape)} but {shown} was expected (* = any size); "
            "pass a tensor of the expected shape."
        )
