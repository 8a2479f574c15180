"""Every kind of bad input gets its own status naming the field, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from tests.captioning.conftest import caption_request, encode, stream_request
from tests.runtime.helpers import field_violations, png_declaring

INVALID, NOT_FOUND, EXHAUSTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED)
GOOD = encode(render_scene(EVAL_SEEDS[32000]).image)

CASES = {
    "corrupt image": (dict(data=b"definitely not an image"), INVALID, "image.data"),
    "empty image": (dict(data=b""), INVALID, "image.data"),
    "truncated png": (dict(data=GOOD[: len(GOOD) // 2]), INVALID, "image.data"),
    "png header only": (dict(data=GOOD[:40]), INVALID, "image.data"),
    "huge declared canvas": (dict(data=png_declaring(100_000, 100_000)), EXHAUSTED, "image.data"),
    "negative beam": (dict(beam_size=-1), INVALID, "options.beam_size"),
    "beam above 10": (dict(beam_size=11), INVALID, "options.beam_size"),
    "negative max length": (dict(max_length=-3), INVALID, "options.max_length_words"),
    "max length above 50": (dict(max_length=51), INVALID, "options.max_length_words"),
    "unknown model": (dict(model="no-such-model"), NOT_FOUND, "options.model"),
}


def _request(kind, data=GOOD, **options):
    return (caption_request if kind == "unary" else stream_request)(data, **options)


def _call(stub, kind, request):
    if kind == "unary":
        return stub.Caption(request, timeout=30)
    return list(stub.StreamCaption(request, timeout=30))


@pytest.mark.parametrize("kind", ["unary", "stream"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_names_its_field_and_the_server_keeps_serving(captioning_stub, kind, name):
    fields, code, field = CASES[name]
    with pytest.raises(grpc.RpcError) as caught:
        _call(captioning_stub, kind, _request(kind, **fields))
    assert caught.value.code() == code, caught.value.details()
    assert field in [f for f, _ in field_violations(caught.value)], caught.value.details()
    assert field in caught.value.details()
    # The next good call succeeds.
    assert captioning_stub.Caption(caption_request(GOOD), timeout=30).caption


@pytest.mark.parametrize("beam,length", [(1, 1), (10, 50), (0, 0)])
def test_edges_of_the_ranges_are_accepted(captioning_stub, beam, length):
    response = captioning_stub.Caption(caption_request(GOOD, beam, length), timeout=30)
    assert 1 <= len(response.words) <= (length or 20)
