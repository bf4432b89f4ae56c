"""Serving an engine folder: over HTTP on Ray Serve (`tcpade-trt serve`, the `serve` extra), or on Triton
Inference Server (`tcpade-trt triton-repo`).

    request.py       a request body -> a checked GenerateRequest, or one sentence and a 4xx status
    conditioning.py  a folder is served by class or, with a pipeline folder, by prompt: checked at start
    worker.py        requests -> images: batched by shape, steps and cache, each sample as it would be alone
    app.py           the Ray Serve deployment (batching, auth, limits, metrics) and its FastAPI routes
    triton_repo.py   writes a Triton model repository; triton_model.py is its Python-backend model

request.py and worker.py need neither Ray nor Triton: they are tested on their own, and app.py and
triton_model.py only wire them.
"""
