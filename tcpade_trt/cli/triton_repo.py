"""Write a Triton Inference Server model repository that serves an engine folder (Python backend):

    tcpade-trt triton-repo --engines engines/demo-int8 --out triton-repo
    tritonserver --model-repository triton-repo --http-address 127.0.0.1
    curl -s 127.0.0.1:8000/v2/models/tcpade/infer -d '{"inputs": [{"name": "seed", "shape": [1, 1],
        "datatype": "INT64", "data": [1]}, {"name": "class", "shape": [1, 1], "datatype": "INT64", "data": [3]}],
        "outputs": [{"name": "image", "parameters": {"binary_data": true}}]}'

The model takes one image per request (class or prompt, seed, steps, cache, guidance_scale: the HTTP
server's fields, text as UTF-8 bytes in UINT8 tensors) and answers the PNG bytes and its full / predicted
steps; Triton's dynamic batcher batches requests up to the folder's batch range (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path

from .args import non_negative_float, positive_int


def add_arguments(p) -> None:
    p.add_argument("--engines", type=Path, required=True, help="the engine folder to serve")
    p.add_argument("--out", type=Path, required=True, help="the repository folder to create (must not exist)")
    p.add_argument("--pipeline", type=Path, help="text-conditioned folders: a local diffusers pipeline folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-steps", type=positive_int, default=100, help="largest steps a request may ask for")
    p.add_argument("--batch-wait-ms", type=non_negative_float, default=10.0,
                   help="Triton's dynamic batching queue delay (10 ms)")


def run(args) -> int:
    from ..paths import check_output_folder
    from ..serve.triton_repo import write_repository

    check_output_folder(args.out, "--out")

    out = write_repository(args.engines, args.out, pipeline=args.pipeline, device=args.device,
                           max_steps=args.max_steps, batch_wait_ms=args.batch_wait_ms)
    print(f"wrote {out}/tcpade (config.pbtxt, 1/model.py); serve it with: tritonserver --model-repository {out} "
          "--http-address 127.0.0.1")
    return 0
