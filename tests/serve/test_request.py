"""Request bodies: what a client may ask for, and one sentence with a 4xx status for everything else."""

import pytest

from tcpade_trt.cache import cache_config
from tcpade_trt.serve.request import Accepts, Limits, RequestError, parse_request

DEMO_CLASSES = ["astronaut", "coffee", "chelsea"]


def parse(body, classes=DEMO_CLASSES, num_classes=None):
    return parse_request(body, Accepts(classes=classes, num_classes=num_classes), Limits(max_steps=50))


WAN = Accepts(prompts=True, negative_prompts=True)  # text, classifier-free guidance
FLUX = Accepts(prompts=True)  # text, guidance embedded: no negative prompt


def test_defaults_and_class_names():
    request = parse({"class": "coffee"})
    assert (request.label, request.seed, request.steps, request.format) == (1, 0, 20, "png")
    assert request.cache == cache_config("tcpade-fast")  # parsed once, here
    assert parse({}, classes=None, num_classes=1000).label == 0
    assert parse({"class": 999, "guidance_scale": 4}, classes=None, num_classes=1000).guidance_scale == 4.0


def test_requests_that_may_share_a_generation_have_equal_keys():
    a, b = parse({"seed": 1, "class": 0}), parse({"seed": 2, "class": 2})
    assert a.batch_key() == b.batch_key() != parse({"steps": 28}).batch_key()


@pytest.mark.parametrize("body,status,message", [
    ([1, 2], 400, "must be a JSON object"),
    ({"prompt": "a cat"}, 422, "class-conditional: send \"class\", not \"prompt\""),
    ({"negative_prompt": "blur"}, 422, "not \"negative_prompt\""),
    ({"path": "/etc/passwd"}, 400, "unknown field"),  # a request names no files
    ({"class": "dog"}, 400, "class must be an index from 0 to 2 or one of astronaut"),
    ({"class": -1}, 400, "class must be"),
    ({"class": True}, 400, "class must be"),
    ({"seed": -1}, 400, "seed must be a whole number"),
    ({"seed": 2**64}, 400, "seed must be"),
    ({"steps": 1}, 400, "steps must be a whole number from 2 to 50"),
    ({"steps": 51}, 400, "from 2 to 50"),
    ({"steps": 20.5}, 400, "steps must be"),
    ({"cache": "turbo"}, 400, "cache: unknown cache preset"),
    ({"cache": "tcpade-fast:threshold=nan"}, 400, "threshold"),
    ({"guidance_scale": float("inf")}, 400, "guidance_scale must be"),
    ({"format": "jpeg"}, 400, "format must be"),
    # a schedule that does not fit the request's own steps: its own 400, before it can join (and fail) a batch
    ({"steps": 20, "cache": "tcpade-fast:full_steps=0/1/30"}, 400, "cache: full_steps 0/1/30 names step 30"),
])
def test_bad_requests_are_one_sentence_with_a_status(body, status, message):
    with pytest.raises(RequestError, match=message) as info:
        parse(body)
    assert info.value.status == status and "\n" not in info.value.message


def test_text_conditioned_folders_take_a_prompt_and_may_batch_different_ones():
    a = parse_request({"prompt": "a red fox", "negative_prompt": "blurry", "seed": 4}, WAN, Limits())
    assert (a.prompt, a.negative_prompt, a.label, a.seed) == ("a red fox", "blurry", None, 4)
    b = parse_request({"prompt": "a cat", "seed": 5}, WAN, Limits())
    assert b.negative_prompt == "" and a.batch_key() == b.batch_key()  # conditioning is per sample


@pytest.mark.parametrize("accepts,body,status,message", [
    (WAN, {}, 400, "send a \"prompt\""),
    (WAN, {"class": 3, "prompt": "x"}, 422, "conditioned by text: send \"prompt\", not \"class\""),
    (WAN, {"prompt": 7}, 400, "prompt must be a string of at most 2000 characters"),
    (WAN, {"prompt": "x" * 2001}, 400, "at most 2000"),
    (WAN, {"prompt": "x", "negative_prompt": ["a"]}, 400, "negative_prompt must be a string"),
    (FLUX, {"prompt": "x", "negative_prompt": "blurry"}, 422, "takes no negative_prompt"),
])
def test_bad_prompt_requests(accepts, body, status, message):
    with pytest.raises(RequestError, match=message) as info:
        parse_request(body, accepts, Limits())
    assert info.value.status == status and "\n" not in info.value.message


def test_a_folder_without_classes_is_refused_as_unservable():
    with pytest.raises(RequestError) as info:
        parse({}, classes=None, num_classes=None)
    assert info.value.status == 422
