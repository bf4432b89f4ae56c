"""Serving an engine folder: over HTTP on Ray Serve (`tcpade-trt serve`, the `serve` extra), or on Triton
Inference Server (`tcpade-trt triton-repo`).

    request.py       a request body -> a checked GenerateRequest, or one sentence and a 4xx status
    worker.py        requests -> images: batched by shape, steps and cache, each sample as it would be alone
    app.py           the Ray Serve deployment (batching, auth, limits, metrics) and its FastAPI routes
    openai_images.py the OpenAI Images API dialect; schema.py what /openapi.json says, narrowed per folder
    triton_repo.py   writes a Triton model repository; triton_model.py is its Python-backend model

What a folder takes (classes, or prompts through a pipeline folder) and how its latents become pixels is
runtime/model_io.py's, as for `generate` and the benchmarks. request.py and worker.py need neither Ray nor
Triton: they are tested on their own, and app.py and triton_model.py only wire them.
"""
