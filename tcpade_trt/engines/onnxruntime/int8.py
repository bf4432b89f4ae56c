"""onnxruntime's own INT8 recipes for the block stack, from its fp32 graph (the build's quantization stage)."""

from __future__ import annotations

from pathlib import Path

from ...export.onnx_files import move_model, referenced_data_files, scratch_folder


def quantize_onnxruntime_int8(dst: Path, options, calibration_feeds) -> dict:
    """Replace the fp32 graph at ``dst`` with onnxruntime's INT8 form; returns the recipe for the manifest.
    ``calibration_feeds()``: (feeds, calibration record) of block inputs on real trajectories (static mode only)."""
    from .int8_dynamic import quantize_int8_dynamic
    from .sessions import quantize_static_qdq

    # the fp32 graph (and its external data) moves aside under its own name, so that its references hold
    # and the quantized graph can take blocks.onnx / blocks.onnx.data; the scratch folder goes with it
    with scratch_folder(dst, "fp32") as scratch:
        src = Path(scratch) / dst.name
        move_model(dst, src)
        external = bool(referenced_data_files(src))
        if options.int8_mode == "dynamic":
            report = quantize_int8_dynamic(src, dst, external)
            recipe = {"method": "dynamic INT8 (onnxruntime's MatMulInteger form, written one weight at a time): "
                                "per-column S8 weights of every MatMul / Gemm with a constant weight",
                      "quantized_matmuls": report.matmuls}
            if report.skipped:
                recipe["left_float"] = report.skipped
            return recipe
        feeds, calibration = calibration_feeds()
        quantize_static_qdq(src, dst, feeds, external=external)
        return {"method": "onnxruntime static QDQ INT8 per-channel (MatMul, Gemm)", "calibration": calibration}
