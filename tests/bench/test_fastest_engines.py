"""The demo names the fastest engine variant whose images hold, and builds the variants a CPU is expected to favour."""

from tcpade_trt.bench.demo_run import default_variants, fastest_engines


def _row(backend, precision, cache, latency, psnr):
    return {"backend": backend, "precision": precision, "cache": cache, "latency_s": latency,
            "psnr_vs_fp32_db": psnr}


def test_the_fastest_variant_is_the_fastest_whose_uncached_images_hold_40_db():
    runs = [_row("torch", "fp32", "none", 9.0, None), _row("torch", "fp32", "tcpade-fast", 3.0, 41.0),
            _row("onnxruntime", "fp32", "none", 4.0, 100.0), _row("onnxruntime", "fp32", "tcpade-fast", 1.5, 41.0),
            _row("onnxruntime", "int8", "none", 3.0, 58.0), _row("onnxruntime", "int8", "tcpade-fast", 1.1, 41.2),
            _row("onnxruntime", "fp8", "none", 2.0, 31.0), _row("onnxruntime", "fp8", "tcpade-fast", 0.7, 30.0)]
    best = fastest_engines({"runs": runs}, "tcpade-fast")
    assert (best["backend"], best["precision"]) == ("onnxruntime", "int8")  # fp8 is faster but its images do not hold
    assert fastest_engines({"runs": runs[:2]}, "tcpade-fast") is None  # torch alone: no engine to recommend


def test_other_backends_join_the_demo_where_they_promise_speed(monkeypatch):
    from tcpade_trt.engines import registry

    openvino = registry.backends()["openvino"]
    monkeypatch.setattr(type(openvino), "available", lambda self: True)
    monkeypatch.setattr(type(openvino), "promising_here", lambda self: ("bf16",))
    assert default_variants() == ("fp32", "int8", "openvino:bf16")
    monkeypatch.setattr(type(openvino), "promising_here", lambda self: ())
    assert default_variants() == ("fp32", "int8")
