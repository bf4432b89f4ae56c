"""Load test of `tcpade-trt serve` with locust: image clients with Poisson think times, both dialects.

    tcpade-trt serve --engines engines/demo-int8 --max-batch 16 --batch-wait-ms 20 &
    locust -f scripts/locustfile.py --headless --host http://127.0.0.1:8000 --users 16 --spawn-rate 16 \
        --run-time 60s --csv docs/serving/locust

Each simulated client waits an exponential time between its requests (mean 1 / TCPADE_RATE seconds: Poisson
arrivals per client), then asks for one image: three times in four through /v1/generate (its class from the
served folder's own schema, /openapi.json), once through the OpenAI Images API (/v1/images/generations). Locust
reports requests/s (= images/s: one image per request), the median and the 99th percentile latency per route,
and counts any answer but 200 as a failure (its exit status is then 1). Settings, from the environment:
TCPADE_RATE (requests per second per client, 1.0), TCPADE_STEPS (20), TCPADE_CACHE (tcpade-fast), TCPADE_API_KEY
(sent as a bearer token when set).
"""

from __future__ import annotations

import itertools
import os
import random

from locust import HttpUser, task

RATE = float(os.environ.get("TCPADE_RATE", "1.0"))
STEPS = int(os.environ.get("TCPADE_STEPS", "20"))
CACHE = os.environ.get("TCPADE_CACHE", "tcpade-fast")
KEY = os.environ.get("TCPADE_API_KEY")
SEEDS = itertools.count()


class ImageClient(HttpUser):
    def wait_time(self) -> float:
        return random.expovariate(RATE)

    def on_start(self) -> None:
        if KEY:
            self.client.headers["Authorization"] = f"Bearer {KEY}"
        schema = self.client.get("/openapi.json", name="/openapi.json").json()
        body = schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        labels = body["properties"].get("class", {}).get("anyOf", [{}])[0]
        self.classes = labels.get("maximum", 0) + 1 if labels.get("type") == "integer" else None  # None: prompts
        self.steps = min(STEPS, body["properties"]["steps"].get("maximum", STEPS))

    def _conditioning(self, seed: int) -> dict:
        return {"class": seed % self.classes} if self.classes else {"prompt": f"a red fox, picture {seed}"}

    @task(3)
    def generate(self) -> None:
        seed = next(SEEDS)
        self.client.post("/v1/generate", json={**self._conditioning(seed), "seed": seed, "steps": self.steps,
                                               "cache": CACHE}, name="/v1/generate")

    @task(1)
    def openai_images(self) -> None:
        seed = next(SEEDS)
        prompt = str(seed % self.classes) if self.classes else f"a red fox, picture {seed}"
        self.client.post("/v1/images/generations", json={"prompt": prompt, "n": 1, "seed": seed,
                                                         "steps": self.steps, "cache": CACHE},
                         name="/v1/images/generations")
