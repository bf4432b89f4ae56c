"""Batched serving gives every request the image it would get alone."""

import pytest
import torch

from tcpade_trt.serve.request import GenerateRequest
from tcpade_trt.serve.worker import Generator


def request(label, seed, steps=6, cache="tcpade-fast", guidance=4.0):
    return GenerateRequest(label, seed, steps, cache, guidance, "png")


@pytest.fixture(scope="module")
def dit(fp32_folders):
    return Generator(fp32_folders["tiny-dit"], device="cpu")  # class-conditional, CFG doubles the rows


def test_batched_requests_get_the_images_they_get_alone(dit, monkeypatch):
    requests = [request(1, 10), request(3, 11), request(5, 12, steps=8), request(7, 13)]
    generated = []
    original = dit.runtime.generate

    def spy(cond, noise, **kwargs):
        result = original(cond, noise, **kwargs)
        generated.append((noise.shape[0], result.latents))
        return result

    monkeypatch.setattr(dit.runtime, "generate", spy)
    together = dit.generate(requests)
    # 6 steps: requests 0, 1, 3 (2 per call: CFG doubles them to the folder's 4 rows), then 3 alone; 8 steps: 2
    assert [n for n, _ in generated] == [2, 1, 1]
    batched_latents = torch.cat([latents for _, latents in generated])
    generated.clear()
    alone = [dit.generate([r])[0] for r in requests]
    alone_latents = torch.cat([latents for _, latents in generated])
    order = [0, 1, 3, 2]  # the grouped order of the batched calls
    torch.testing.assert_close(batched_latents, alone_latents[order], rtol=1e-4, atol=1e-5)
    assert [r.full_steps for r in together] == [r.full_steps for r in alone]
    assert [r.batch for r in together] == [2, 2, 1, 1] and all(r.image.startswith(b"\x89PNG") for r in together)


def test_batch_dependent_caches_run_each_request_alone(dit):
    teacache = [request(0, 1, cache="teacache"), request(1, 2, cache="teacache")]
    gated = [request(0, 1, cache="tcpade-fast:threshold=1.0"), request(1, 2, cache="tcpade-fast:threshold=1.0")]
    assert dit.groups(teacache) == [[0], [1]] and dit.groups(gated) == [[0], [1]]
    assert dit.groups([request(0, 1), request(1, 2)]) == [[0, 1]]
    # one config, spelled two ways: parsed once into equal configs, they share a batch
    assert dit.groups([request(0, 1, cache="tcpade-fast"), request(1, 2, cache="tcpade-fast:budget=0.35")]) \
        == [[0, 1]]


def test_closing_a_generator_stops_its_step_batcher_before_its_engines(fp32_folders):
    """A replica shutting down: requests already with the step batcher finish, then the engines are released
    (closing the runtime under a running tick would free plans the tick is using)."""
    generator = Generator(fp32_folders["tiny-dit"], device="cpu")
    future = generator.submit_stepwise(request(1, 10, steps=4))
    generator.close()
    assert future.result(timeout=60).result.full_steps >= 2  # it finished before the engines went
    assert generator.runtime.closed and not generator._stepper._thread.is_alive()


def test_a_request_that_fails_answers_only_for_itself(dit, monkeypatch):
    """Two requests share a generation; one of them makes it fail (a non-finite sample, say): the other still gets
    the image it gets alone, and only the failing one gets an error, with its own text."""
    from tcpade_trt.errors import TcpadeError

    requests = [request(1, 20), request(3, 21)]  # one batch key: they share a generation
    alone = dit.generate([requests[0]])[0]
    real = dit._run

    def run(group):
        if any(r.seed == 21 for r in group):
            raise TcpadeError("the generation of seed 21 was not finite")
        return real(group)

    monkeypatch.setattr(dit, "_run", run)
    first, second = dit.generate_each(requests)
    assert isinstance(second, TcpadeError) and "seed 21" in str(second)
    assert first.image == alone.image and first.batch == 1
    with pytest.raises(TcpadeError, match="seed 21"):  # the library call still raises the first failure
        dit.generate(requests)


def test_a_generation_that_nobody_waits_for_stops_at_its_next_step(dit, monkeypatch):
    """A server's timed-out requests are cancelled: their generation stops instead of running its remaining steps
    for nobody (which delayed every request behind it). A group still computes while one of its requests waits."""
    from tcpade_trt.errors import GenerationCancelled

    steps_run = []
    original = dit.runtime.generate

    def counting(cond, noise, **kwargs):
        asked = kwargs["should_stop"]

        def should_stop():
            steps_run.append(1)
            return asked()
        return original(cond, noise, **{**kwargs, "should_stop": should_stop})

    monkeypatch.setattr(dit.runtime, "generate", counting)
    gone, waiting = request(1, 10, steps=8), request(2, 11, steps=8)
    gone.cancelled.set()
    (outcome,) = dit.generate_each([gone])
    assert isinstance(outcome, GenerationCancelled) and len(steps_run) == 1  # asked once, before the first step
    steps_run.clear()
    outcomes = dit.generate_each([gone, waiting])  # one shared generation: the waiting request still needs it
    assert all(o.image.startswith(b"\x89PNG") for o in outcomes) and len(steps_run) == 8


def test_the_step_batcher_drops_a_request_whose_caller_gave_up(dit):
    from tcpade_trt.serve.request import GenerateRequest as Request

    future = dit.submit_stepwise(Request(1, 3, 400, "none", 4.0, "png"))
    future.cancel()  # what asyncio.wait_for does to the server's wrapped future at its timeout
    done = dit.submit_stepwise(Request(2, 4, 4, "none", 4.0, "png")).result(timeout=60)
    # its own 2 rows (CFG) at every step: the cancelled 400-step request never ran beside it (2 + 2 rows)
    assert done.result.full_steps == 4 and done.mean_rows == 2
