"""`tcpade-trt`: thin subcommands over the Python API.

Every user mistake surfaces as one line ``error: ...`` and exit status 2, never a traceback; that
includes argparse's own complaints (a bad number, an unknown option). A subcommand whose optional
dependency is missing says so instead of breaking the whole CLI. SIGTERM (``kill``, a container
stop, a CI timeout) is handled like Ctrl-C: a build in progress removes its temporary folder.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable

from .. import __version__
from ..errors import TcpadeError

# subcommand name -> (module, help); each module defines add_arguments(parser) and run(args)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tcpade_trt.cli.demo", "run the demo on the shipped demo model (the main job)"),
    "sample": ("tcpade_trt.cli.sample", "sample a built-in or local model with a cache preset (torch)"),
    "build": ("tcpade_trt.cli.build", "build an engine folder (ONNX / onnxruntime / TensorRT, fp32 to fp8)"),
    "inspect": ("tcpade_trt.cli.inspect", "print and validate an engine folder's manifest"),
    "generate": ("tcpade_trt.cli.generate", "generate from an engine folder with a cache preset"),
    "gpu-bench": ("tcpade_trt.cli.gpu_bench", "benchmark a FLUX.1-dev-size transformer on CUDA (bf16, compile, FP8)"),
    "calibrate": ("tcpade_trt.cli.calibrate", "choose TC-Padé's full steps for a model per step count and budget"),
    "serve": ("tcpade_trt.cli.serve", "serve an engine folder over HTTP on Ray Serve (the `serve` extra)"),
    "triton-repo": ("tcpade_trt.cli.triton_repo", "write a Triton model repository serving an engine folder"),
    "bench": ("tcpade_trt.cli.bench", "benchmark caching x quantization x batch size, with diffusers' hooks as peers"),
}


class UsageError(Exception):
    """argparse's complaint about the command line, raised instead of printed with the usage block."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block and exit by itself
        raise UsageError(f"{message} (see `{self.prog} --help`).")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that cleanup runs as for Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    from importlib import import_module

    parser = Parser(
        prog="tcpade-trt",
        description="TC-Padé step caching for diffusion transformers, deployed as ONNX / TensorRT engines.",
    )
    parser.add_argument("--version", action="version", version=f"tcpade-trt {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    runners: dict[str, Callable] = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = import_module(module_name)
        except ImportError as exc:  # an optional dependency is missing: disable just this one
            sub = subs.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            runners[name] = _unavailable(name, exc)
            continue
        sub = subs.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        runners[name] = module.run
    return parser, runners


def _unavailable(name: str, exc: ImportError) -> Callable:
    def run(args):
        raise TcpadeError(f"`tcpade-trt {name}` needs a package that is not installed ({exc}); "
                          "install it, e.g. pip install 'tcpade-trt[dev]'.")
    return run


_DISK_ERRORS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space within your quota",
                errno.EROFS: "write somewhere that is not read-only"}


def main(argv: list[str] | None = None) -> int:
    parser, runners = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.command:  # nothing asked: the help goes where errors go, and it is not a success
        parser.print_help(sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    _speak_plainly()
    try:
        return runners[args.command](args) or 0
    except TcpadeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM); nothing half-written was left behind", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tcpade-trt inspect F | head`: the reader left; no traceback, as other tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        # a full disk mid-build or mid-write: what was being written is removed (atomic writes, temporary build
        # folders), so the sentence is the whole story
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror}{where}; {_DISK_ERRORS[exc.errno]} and run it again (nothing half-written was "
              "left behind).", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _speak_plainly() -> None:
    """Warnings and the library's log lines as one line each on stderr ("warning: ..."), not as
    Python's file:line reports."""
    import warnings

    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
    logger = logging.getLogger("tcpade_trt")
    if not logger.handlers:
        logger.addHandler(_StderrHandler())
        # TCPADE_LOG=debug adds the library's debug lines, with the traceback of a failed build stage
        logger.setLevel(logging.DEBUG if os.environ.get("TCPADE_LOG", "").lower() == "debug" else logging.INFO)


class _StderrHandler(logging.Handler):
    """One plain line per record on whatever sys.stderr is at the time (tests swap it)."""

    def emit(self, record) -> None:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        print(level + record.getMessage(), file=sys.stderr)
        if record.exc_info:
            import traceback

            traceback.print_exception(*record.exc_info, file=sys.stderr)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
