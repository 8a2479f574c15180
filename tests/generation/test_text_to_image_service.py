"""TextToImage and ListModels through a real Generation server: sizes, counts, seeds, bad input."""

from __future__ import annotations

import concurrent.futures

import grpc
import numpy as np
import pytest

from models.generation.evaluate_text2image import TARGET_SEMANTIC_ACCURACY
from models.training import read_manifest
from synesthesia.v1 import common_pb2
from tests.generation.helpers import SERVICE, decode_png, list_models, text_to_image
from tests.runtime.helpers import field_violations

PROMPT = "a large red circle"


@pytest.fixture(scope="module")
def server(shared_service):
    return shared_service(SERVICE)


@pytest.mark.parametrize("count", [1, 5, 16])
def test_returns_as_many_64x64_pngs_as_asked(server, count):
    reply = text_to_image(server.target, PROMPT, image_count=count, seed=7)
    assert len(reply.images) == count
    for image in reply.images:
        assert decode_png(image.data).shape == (64, 64, 3)
    assert reply.model == "text2image"
    assert reply.seed == 7
    assert list(reply.unknown_words) == []


def test_same_seed_gives_the_same_bytes_whatever_shares_the_batch(server):
    alone = [i.data for i in text_to_image(server.target, "a small blue cross", image_count=3, seed=1234).images]
    # The same request again, concurrently with others of other sizes, so the batcher mixes them.
    requests = [("a small blue cross", 3, 1234), ("a large green square", 16, 5), ("a small blue cross", 3, 1234),
                ("a yellow triangle", 1, 9), ("a small blue cross", 3, 1234), ("a large purple circle", 7, 11)] * 2
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda r: text_to_image(server.target, r[0], image_count=r[1], seed=r[2]), requests))
    for (prompt, _, _), reply in zip(requests, replies):
        if prompt == "a small blue cross":
            assert [i.data for i in reply.images] == alone


def test_image_i_does_not_depend_on_how_many_were_asked(server):
    two = text_to_image(server.target, PROMPT, image_count=2, seed=99).images
    five = text_to_image(server.target, PROMPT, image_count=5, seed=99).images
    assert [i.data for i in two] == [i.data for i in five[:2]]


def test_different_seeds_and_images_differ(server):
    first = text_to_image(server.target, PROMPT, image_count=4, seed=1).images
    second = text_to_image(server.target, PROMPT, image_count=4, seed=2).images
    pixels = [decode_png(i.data).astype(np.float32) for i in (*first, *second)]
    distances = [np.abs(a - b).mean() for i, a in enumerate(pixels) for b in pixels[i + 1:]]
    assert min(distances) > 1.0, distances


def test_seed_zero_picks_a_seed_that_reproduces(server):
    picked = text_to_image(server.target, PROMPT, image_count=2, seed=0)
    assert picked.seed != 0
    again = text_to_image(server.target, PROMPT, image_count=2, seed=picked.seed)
    assert [i.data for i in again.images] == [i.data for i in picked.images]


def test_unknown_words_are_ignored_and_reported(server):
    reply = text_to_image(server.target, "a large red circle with sparkles, please", image_count=1, seed=3)
    assert list(reply.unknown_words) == ["with", "sparkles", "please"]
    plain = text_to_image(server.target, PROMPT, image_count=1, seed=3)
    assert reply.images[0].data == plain.images[0].data


def test_case_and_punctuation_do_not_change_the_picture(server):
    shouted = text_to_image(server.target, "  A LARGE Red circle!  ", image_count=1, seed=3)
    assert list(shouted.unknown_words) == []
    assert shouted.images[0].data == text_to_image(server.target, PROMPT, image_count=1, seed=3).images[0].data


def test_a_prompt_of_exactly_512_characters_is_served(server):
    prompt = PROMPT + " " * (512 - len(PROMPT))
    assert len(text_to_image(server.target, prompt, image_count=1, seed=1).images) == 1


BAD_REQUESTS = [
    (dict(prompt=""), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
    (dict(prompt="   \n\t"), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
    (dict(prompt="a red circle " * 800), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),  # 10 kB
    (dict(prompt="x" * 513), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
    (dict(prompt="hello wonderful world"), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
    (dict(image_count=0), grpc.StatusCode.INVALID_ARGUMENT, "image_count"),
    (dict(image_count=17), grpc.StatusCode.INVALID_ARGUMENT, "image_count"),
    (dict(image_count=-3), grpc.StatusCode.INVALID_ARGUMENT, "image_count"),
    (dict(model="no-such-model"), grpc.StatusCode.NOT_FOUND, "model"),
    (dict(model="sketch2photo"), grpc.StatusCode.INVALID_ARGUMENT, "model"),
]


@pytest.mark.parametrize("overrides, code, field", BAD_REQUESTS,
                         ids=["empty", "blank", "10kB", "513 chars", "no known word", "count 0", "count 17",
                              "count -3", "unknown model", "image model"])
def test_bad_requests_name_the_field_and_the_server_keeps_serving(server, overrides, code, field):
    request = {"prompt": PROMPT, "image_count": 1, "seed": 5, **overrides}
    with pytest.raises(grpc.RpcError) as err:
        text_to_image(server.target, **request)
    assert err.value.code() == code
    assert [f for f, _ in field_violations(err.value)] == [field]
    assert err.value.details().startswith(f"{field}:")
    assert len(text_to_image(server.target, PROMPT, image_count=1, seed=5).images) == 1


def test_list_models_describes_the_shipped_text2image_checkpoint(server):
    models = {m.name: m for m in list_models(server.target)}
    info = models["text2image"]
    entry = read_manifest()["text2image"]
    assert info.is_default and info.task == "text-to-image"
    assert info.backend == common_pb2.MODEL_BACKEND_BUILTIN
    assert info.weights_sha256 == entry["sha256"]
    assert info.parameter_count == entry["parameter_count"]
    assert info.device in ("cpu", "cuda:0")
    assert info.metrics["semantic_accuracy"] >= TARGET_SEMANTIC_ACCURACY
    assert [m.name for m in models.values() if m.is_default] == ["text2image"]
