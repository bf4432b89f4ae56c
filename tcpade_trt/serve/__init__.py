"""Serving an engine folder over HTTP on Ray Serve (`tcpade-trt serve`, the `serve` extra).

    request.py   a request body -> a checked GenerateRequest, or one sentence and a 4xx status
    worker.py    requests -> images: batched by shape, steps and cache, each sample as it would be alone
    app.py       the Ray Serve deployment (batching, auth, limits, metrics) and its FastAPI routes

request.py and worker.py need no Ray: they are tested on their own, and app.py only wires them.
"""
