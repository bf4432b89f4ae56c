"""`tcpade-trt serve`'s application on a real local Ray Serve: routes, batching, keys, limits, errors."""

import base64
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is not installed (pip install 'tcpade-trt[serve]')")
serve = pytest.importorskip("ray.serve")

pytestmark = pytest.mark.filterwarnings("ignore")  # Ray's own deprecation and resource warnings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "s3cret-key-of-24-chars!"


@pytest.fixture(scope="module")
def server(fp32_folders, flux_pipeline_folder):
    """One replica serving tiny-dit (class-conditional, CFG) that wants an API key, one with step-level batching
    (/step), one serving tiny-flux prompts through a local pipeline folder (/flux) and one with no room and a 1 s
    timeout (/tight); Ray started for this module."""
    from tcpade_trt.serve.app import build_app

    port = free_port()
    # on a loaded 2-core machine the HTTP proxy can take longer than Ray's 5-10 s health checks to start
    for name in ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"):
        os.environ.setdefault(name, "120")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env={"env_vars": {"TCPADE_API_KEY": KEY}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"folder": str(fp32_folders["tiny-dit"]), "device": "cpu", "max_batch": 4,
                         "batch_wait_s": 0.3, "max_steps": 12, "require_api_key": True}), name="tiny-dit")
    serve.run(build_app({"folder": str(fp32_folders["tiny-dit"]), "device": "cpu", "max_steps": 12,
                         "require_api_key": True, "batching": "step"}), name="tiny-dit-step", route_prefix="/step")
    serve.run(build_app({"folder": str(fp32_folders["tiny-flux"]), "pipeline": str(flux_pipeline_folder),
                         "device": "cpu", "max_steps": 12, "require_api_key": True}), name="tiny-flux",
              route_prefix="/flux")
    # room for 4 requests and nobody waiting beside them, 0.5 s to answer: for 503 and 408 (tiny-dit runs about 1 ms
    # per uncached step on a 2-core CPU; its DDIM scheduler takes at most 1000 steps, which --max-steps 5000 meets)
    serve.run(build_app({"folder": str(fp32_folders["tiny-dit"]), "device": "cpu", "max_batch": 4,
                         "max_queued_requests": 0, "timeout_s": 0.5, "max_steps": 5000, "require_api_key": True}),
              name="tiny-dit-tight", route_prefix="/tight")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def call(url, body=None, headers=None, raw=None, key=KEY):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    headers = {"Content-Type": "application/json", **auth, **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_health_and_a_png(server):
    status, _, body = call(f"{server}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, png = call(f"{server}/v1/generate", {"class": 3, "seed": 1, "steps": 6,
                                                                "guidance_scale": 4})
    assert status == 200 and png.startswith(b"\x89PNG") and headers["content-type"] == "image/png"
    assert int(headers["x-tcpade-full-steps"]) + int(headers["x-tcpade-predicted-steps"]) == 6


def test_a_request_alone_on_an_idle_server_skips_the_batch_wait(server):
    """The server batches within 0.3 s of each other; a lone request has nobody to wait for and starts at once."""
    status, headers, _ = call(f"{server}/v1/generate", {"class": 1, "seed": 5, "steps": 4, "guidance_scale": 4})
    assert status == 200 and float(headers["x-tcpade-queue-s"]) < 0.25  # with the wait: at least 0.3 s


def test_an_uncached_request_predicts_nothing_and_is_answered(server):
    """Every step full (predicted 0): the step counters must not be asked to add 0 (Ray refuses that: a 500)."""
    status, headers, png = call(f"{server}/v1/generate", {"class": 2, "steps": 4, "cache": "none",
                                                           "guidance_scale": 4})
    assert status == 200 and headers["x-tcpade-predicted-steps"] == "0" and png.startswith(b"\x89PNG")


def test_json_answers_carry_the_image_and_the_statistics(server):
    status, _, body = call(f"{server}/v1/generate", {"class": 3, "seed": 1, "steps": 6, "guidance_scale": 4,
                                                           "format": "json"})
    answer = json.loads(body)
    assert status == 200 and base64.b64decode(answer["image_png_base64"]).startswith(b"\x89PNG")
    assert set(answer["stats"]) == {"full_steps", "predicted_steps", "queue_s", "compute_s", "batch", "total_s"}


def test_a_text_conditioned_folder_answers_prompts_and_refuses_classes(server):
    status, headers, png = call(f"{server}/flux/v1/generate", {"prompt": "a red rocket", "seed": 2, "steps": 6,
                                                                "guidance_scale": 3.5})
    assert status == 200 and png.startswith(b"\x89PNG") and pixels(png).shape == (16, 16, 3)
    other = call(f"{server}/flux/v1/generate", {"prompt": "a cat", "seed": 2, "steps": 6, "guidance_scale": 3.5})[2]
    assert other != png  # the prompt shapes the image
    status, _, body = call(f"{server}/flux/v1/generate", {"class": 3})
    assert status == 422 and "send \"prompt\"" in json.loads(body)["error"]
    status, _, body = call(f"{server}/flux/v1/generate", {"prompt": "a cat", "negative_prompt": "dogs"})
    assert status == 422 and "no negative_prompt" in json.loads(body)["error"]


def test_concurrent_requests_share_a_batched_generation_and_get_their_own_images(server):
    bodies = [{"class": c, "seed": 20 + c, "steps": 6, "guidance_scale": 4} for c in range(3)]
    answers = [None] * 3

    def send(i):
        answers[i] = call(f"{server}/v1/generate", bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a[0] == 200 for a in answers)
    assert max(int(a[1]["x-tcpade-batch"]) for a in answers) >= 2  # arrivals within 0.3 s were batched
    alone = call(f"{server}/v1/generate", bodies[1])[2]
    assert answers[1][2] == alone  # the same PNG as its request alone


def pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def test_step_level_batching_mixes_step_counts_and_caches(server):
    """batching="step": requests with other steps and caches run side by side, joining at step boundaries, and
    each image is its image alone (within one grey level: batch-size rounding before 8-bit quantisation)."""
    bodies = [{"class": 1, "seed": 5, "steps": 6, "guidance_scale": 4},
              {"class": 2, "seed": 6, "steps": 9, "cache": "teacache", "guidance_scale": 4},
              {"class": 4, "seed": 7, "steps": 7, "cache": "none", "guidance_scale": 4, "format": "json"}]
    answers = [None] * len(bodies)

    def send(i):
        answers[i] = call(f"{server}/step/v1/generate", bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a[0] for a in answers] == [200, 200, 200]
    stats = json.loads(answers[2][2])["stats"]
    assert stats["full_steps"] == 7 and stats["predicted_steps"] == 0
    for body, answer in zip(bodies[:2], answers[:2]):
        alone = call(f"{server}/step/v1/generate", body)
        assert abs(pixels(answer[2]) - pixels(alone[2])).max() <= 1


@pytest.mark.parametrize("body,status,message", [
    ({"class": 5000}, 400, "class must be an index from 0 to"),
    ({"steps": 50}, 400, "steps must be a whole number from 2 to 12"),
    ({"file": "/etc/passwd"}, 400, "unknown field"),
])
def test_bad_requests_are_4xx_with_one_sentence_and_the_server_keeps_serving(server, body, status, message):
    code, _, answer = call(f"{server}/v1/generate", body)
    assert code == status and message in json.loads(answer)["error"]
    assert call(f"{server}/healthz")[0] == 200


def test_oversized_and_malformed_bodies(server):
    assert call(f"{server}/v1/generate", raw=b"{" + b" " * 20000 + b"}")[0] == 413
    assert call(f"{server}/v1/generate", raw=b"{not json")[0] == 400
    # thousands of nested brackets fit the size limit and exhausted json's recursion (a plain-text 500)
    code, _, answer = call(f"{server}/v1/generate", raw=b'{"class":' + b"[" * 5000)
    assert code == 400 and "nests too deeply" in json.loads(answer)["error"]
    assert call(f"{server}/healthz")[0] == 200


def test_a_keyed_server_wants_the_bearer_token(server):
    url = f"{server}/v1/generate"
    body = {"class": 1, "steps": 4, "guidance_scale": 4}
    code, _, answer = call(url, body, key=None)
    assert code == 401 and "Authorization: Bearer KEY" in json.loads(answer)["error"]
    assert call(url, body, key="wrong")[0] == 401
    # the scheme is case-insensitive (RFC 7235): what some clients send
    assert call(url, body, key=None, headers={"Authorization": f"bearer {KEY}"})[0] == 200
    assert call(url, body)[0] == 200


def test_a_full_server_answers_503_in_json_and_a_slow_request_408_whose_work_stops(server):
    """/tight has room for 4 requests: 4 images of 1000 steps (two generations of two, seconds of work) fill it,
    so a request meanwhile gets 503 (JSON, Retry-After) at once. The 4 get 408 at 0.5 s and their generations stop
    at the next step: the next request is answered, where it would otherwise wait behind their remaining steps and
    time out itself."""
    slow = {"prompt": "1", "n": 4, "steps": 1000, "cache": "none"}
    answers = {}
    first = threading.Thread(target=lambda: answers.update(
        slow=call(f"{server}/tight/v1/images/generations", slow)))
    first.start()
    deadline = time.monotonic() + 0.4  # the probe arrives while the 4 run (and before their timeout)
    while time.monotonic() < deadline and "busy" not in answers:
        time.sleep(0.05)
        code, headers, body = call(f"{server}/tight/v1/generate", {"class": 2, "steps": 2})
        if code == 503:
            answers["busy"] = (code, headers, body)
    first.join()
    _, headers, body = answers["busy"]
    assert "retry" in json.loads(body)["error"] and headers["retry-after"]
    code, _, body = answers["slow"]
    assert code == 408 and "within the server's 0.5 s timeout" in json.loads(body)["error"]["message"]
    code, headers, _ = call(f"{server}/tight/v1/generate", {"class": 2, "steps": 2})
    assert code == 200 and float(headers["x-tcpade-queue-s"]) < 0.3
    code, _, body = call(f"{server}/tight/v1/generate", {"class": 2, "steps": 1001})  # DDIM's limit, not 5000
    assert code == 400 and "from 2 to 1000" in json.loads(body)["error"]


def test_the_openai_client_generates_images(server):
    """The official `openai` client against /v1/images/generations: n images of consecutive seeds, each the image
    /v1/generate gives for its seed; its errors are the client's exceptions with the server's sentence."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny-dit"]
    answer = client.images.generate(model="tiny-dit", prompt="3", n=2, size="8x8", response_format="b64_json",
                                    extra_body={"seed": 11, "steps": 6, "guidance_scale": 4})
    assert len(answer.data) == 2 and answer.output_format == "png"
    images = [base64.b64decode(d.b64_json) for d in answer.data]
    assert images[0] != images[1] and [d.seed for d in answer.data] == [11, 12]  # extra fields kept by the client
    alone = call(f"{server}/v1/generate", {"class": 3, "seed": 12, "steps": 6, "guidance_scale": 4})[2]
    assert abs(pixels(images[1]) - pixels(alone)).max() <= 1  # within batch-size rounding
    with pytest.raises(openai.BadRequestError, match="the prompt is its class"):
        client.images.generate(prompt="a cat")
    with pytest.raises(openai.BadRequestError, match="make 8x8 images"):
        client.images.generate(prompt="3", size="1024x1024")
    with pytest.raises(openai.NotFoundError, match="serves the model 'tiny-dit'"):
        client.images.generate(prompt="3", model="dall-e-3")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong-key-of-enough-chars", max_retries=0).images.generate(
            prompt="3")
    text = openai.OpenAI(base_url=f"{server}/flux/v1", api_key=KEY, max_retries=0)
    fox = text.images.generate(prompt="a red fox", extra_body={"seed": 2, "steps": 6})
    assert pixels(base64.b64decode(fox.data[0].b64_json)).shape == (16, 16, 3)


def test_openapi_describes_each_route_as_this_server_answers_it(server):
    schema = json.loads(call(f"{server}/openapi.json")[2])
    generate = schema["paths"]["/v1/generate"]["post"]
    body = generate["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["steps"]["maximum"] == 12 and body["additionalProperties"] is False
    assert body["properties"]["class"]["anyOf"][0]["maximum"] == 999  # tiny-dit's 1000 classes
    assert {"image/png", "application/json"} <= set(generate["responses"]["200"]["content"])
    assert {"400", "401", "408", "413", "422", "500", "503"} <= set(generate["responses"])
    flux = json.loads(call(f"{server}/flux/openapi.json")[2])["paths"]["/v1/generate"]["post"]
    assert flux["requestBody"]["content"]["application/json"]["schema"]["required"] == ["prompt"]


def test_schemathesis_finds_no_server_error_and_no_answer_the_schema_does_not_describe(server, tmp_path):
    """Property-based requests from the published schema (valid and invalid ones), a bounded number per route: no
    5xx, every status and content type documented, JSON answers as described, invalid bodies refused."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "schemathesis"
    if not cli.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    for prefix in ("", "/flux"):
        config = Path(__file__).with_name("schemathesis.toml")
        run = subprocess.run([str(cli), "--no-color", "--config-file", str(config), "run",
                              f"{server}{prefix}/openapi.json", "--url", f"{server}{prefix}",
                              "-H", f"Authorization: Bearer {KEY}", "--max-examples", "15", "--seed", "1",
                              "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                              "response_schema_conformance,negative_data_rejection",
                              "--phases", "examples,coverage,fuzzing", "--max-time", "60",
                              "--output-truncate", "true"], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)  # its cache folder (.schemathesis/) goes there, not into the checkout
        failures = run.stdout.partition("= FAILURES =")[2].partition("= WARNINGS =")[0] or run.stdout[-3000:]
        assert run.returncode == 0, f"{prefix or '/'}: {failures[:6000]}{run.stderr[-2000:]}"
    assert call(f"{server}/healthz")[0] == 200  # serving afterwards


def test_the_locust_load_test_runs_against_the_server(server, tmp_path):
    """scripts/locustfile.py, headless for a few seconds (docs/serving.md has the figures of a full run): both
    routes answered, no failure (locust's exit status is 1 on any answer but 200)."""
    import csv
    import subprocess
    import sys
    from pathlib import Path

    locust = Path(sys.executable).parent / "locust"
    if not locust.exists():
        pytest.skip("locust is not installed (pip install -e '.[dev]')")
    locustfile = Path(__file__).resolve().parents[2] / "scripts" / "locustfile.py"
    run = subprocess.run([str(locust), "-f", str(locustfile), "--headless", "--host", server, "--users", "4",
                          "--spawn-rate", "4", "--run-time", "8s", "--csv", str(tmp_path / "load"), "--only-summary"],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path,
                         env={**os.environ, "TCPADE_API_KEY": KEY, "TCPADE_RATE": "4", "TCPADE_STEPS": "6"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {r["Name"]: r for r in csv.DictReader(open(tmp_path / "load_stats.csv"))}
    assert int(rows["/v1/generate"]["Request Count"]) > 0 and int(rows["Aggregated"]["Failure Count"]) == 0
