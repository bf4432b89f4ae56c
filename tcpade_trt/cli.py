"""`tcpade-trt`: thin subcommands over the Python API.

Every user mistake surfaces as one line ``error: ...`` and exit status 2, never a traceback.
A subcommand whose optional dependency is missing says so instead of breaking the whole CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import __version__
from .errors import TcpadeError

# subcommand name -> (module, help); each module defines add_arguments(parser) and run(args)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tcpade_trt.demo_cli", "run the demo on the shipped demo model (the main job)"),
    "sample": ("tcpade_trt.sample_cli", "sample a built-in or local model with a cache preset (torch)"),
    "build": ("tcpade_trt.build_cli", "build an engine folder (ONNX / onnxruntime / TensorRT, fp32 to fp8)"),
    "inspect": ("tcpade_trt.inspect_cli", "print and validate an engine folder's manifest"),
    "generate": ("tcpade_trt.generate_cli", "generate from an engine folder with a cache preset"),
    "gpu-bench": ("tcpade_trt.gpu_bench_cli", "benchmark a FLUX.1-dev-size transformer on CUDA (bf16, compile, FP8)"),
    "bench": ("tcpade_trt.bench_cli", "benchmark caching x quantization x batch size, with diffusers' hooks as peers"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    from importlib import import_module

    parser = argparse.ArgumentParser(
        prog="tcpade-trt",
        description="TC-Padé step caching for diffusion transformers, deployed as ONNX / TensorRT engines.",
    )
    parser.add_argument("--version", action="version", version=f"tcpade-trt {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Callable] = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = import_module(module_name)
        except ImportError as exc:  # an optional dependency is missing: disable just this one
            sub = subs.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            runners[name] = _unavailable(name, exc)
            continue
        sub = subs.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(sub)
        runners[name] = module.run
    return parser, runners


def _unavailable(name: str, exc: ImportError) -> Callable:
    def run(args):
        raise TcpadeError(f"`tcpade-trt {name}` needs a package that is not installed ({exc}); "
                          "install it, e.g. pip install 'tcpade-trt[dev]'.")
    return run


def main(argv: list[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return runners[args.command](args) or 0
    except TcpadeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
