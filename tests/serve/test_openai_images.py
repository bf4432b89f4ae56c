"""The OpenAI Images API body (POST /v1/images/generations): what an OpenAI client sends, turned into the same
checked requests as /v1/generate, and one sentence in OpenAI's error shape for everything else."""

import re

import pytest

from tcpade_trt.serve.openai_images import ImagesBody, error_body
from tcpade_trt.serve.request import Accepts, Limits, RequestError, validate

DEMO = Accepts(classes=["astronaut", "coffee", "chelsea"])
FLUX = Accepts(prompts=True)
CONTEXT = {"model": "demo", "size": "64x64", "output_format": "png"}
LIMITS = Limits(max_steps=50)


def requests(body, accepts=DEMO, limits=LIMITS):
    return validate(ImagesBody, body, accepts, limits, **CONTEXT).requests(accepts, limits)


def test_n_images_are_n_requests_of_consecutive_seeds_that_share_a_batch():
    made = requests({"prompt": "coffee", "n": 3, "seed": 7, "steps": 8, "size": "64x64",
                     "response_format": "b64_json", "model": "demo"})
    assert [r.seed for r in made] == [7, 8, 9] and {r.label for r in made} == {1}
    assert len({r.batch_key() for r in made}) == 1 and made[0].steps == 8


def test_a_class_index_as_the_prompt_and_a_random_seed_when_none_is_given():
    a, b = requests({"prompt": " 2 "}), requests({"prompt": "2"})
    assert a[0].label == 2 and a[0].seed != b[0].seed  # OpenAI's endpoint draws new images per call


def test_a_text_conditioned_folder_takes_the_prompt_itself():
    (made,) = requests({"prompt": "a red fox in the snow", "cache": "none"}, accepts=FLUX)
    assert made.prompt == "a red fox in the snow" and made.label is None


@pytest.mark.parametrize("body,status,message", [
    ({"prompt": "a cat"}, 400, "class-conditional: the prompt is its class, an index from 0 to 2 or one of "
                               "astronaut, coffee, chelsea"),
    ({"prompt": ""}, 400, "prompt must be a non-empty string"),
    ({}, 400, "the field \"prompt\" is missing"),
    ({"prompt": "coffee", "size": "1024x1024"}, 400, "make 64x64 images; send \"size\": \"64x64\" or \"auto\""),
    ({"prompt": "coffee", "response_format": "url"}, 400, "inline and keeps no files"),
    ({"prompt": "coffee", "model": "dall-e-3"}, 404, "serves the model 'demo', not 'dall-e-3'"),
    ({"prompt": "coffee", "n": 11}, 400, "n must be a whole number from 1 to 10"),
    ({"prompt": "coffee", "n": True}, 400, "n must be"),
    ({"prompt": "coffee", "quality": "hd"}, 400, "does not take quality"),
    ({"prompt": "coffee", "output_format": "webp"}, 400, "makes png files"),
    ({"prompt": "coffee", "steps": 51}, 400, "steps must be a whole number from 2 to 50"),
    ({"prompt": "coffee", "seed": 2**63 - 2, "n": 3}, 400, "seed + n - 1"),
    ({"prompt": "coffee", "negative_prompt": "blurry"}, 422, "takes no negative_prompt"),
    ({"prompt": "coffee", "cache": "turbo"}, 400, "cache: unknown cache preset"),
    ([1], 400, "must be a JSON object"),
])
def test_what_an_openai_client_may_get_wrong_is_one_sentence(body, status, message):
    with pytest.raises(RequestError, match=re.escape(message)) as info:
        requests(body)
    assert info.value.status == status and "\n" not in info.value.message
    shaped = error_body(info.value)["error"]  # what the official client reads its exception's message from
    assert shaped["message"] == info.value.message and shaped["type"]


def test_pydantic_errors_that_no_validator_words_still_read_as_one_sentence():
    with pytest.raises(RequestError, match="user: ") as info:
        validate(ImagesBody, {"prompt": "coffee", "user": "u" * 300}, DEMO, Limits(), **CONTEXT)
    assert info.value.status == 400 and "\n" not in info.value.message


@pytest.mark.parametrize("extra,message", [
    ({"guidance_scale": False}, "guidance_scale must be a number"),  # pydantic alone read false as 0.0
    ({"seed": True}, "seed must be a whole number"),
    ({"steps": 6.0}, "steps must be a whole number"),
    ({"cache": 3}, "cache must be a cache spec string"),
])
def test_the_generation_fields_are_checked_as_in_the_native_dialect(extra, message):
    with pytest.raises(RequestError, match=message):
        requests({"prompt": "a red fox", **extra}, accepts=FLUX)
