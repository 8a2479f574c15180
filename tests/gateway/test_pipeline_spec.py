"""Pipeline specs: parsing, validation and request building, without servers."""

from __future__ import annotations

import pytest

from services.gateway import pipeline
from services.runtime import ServiceError
from synesthesia.v1 import captioning_pb2, common_pb2, generation_pb2

SPEC = """
steps:
  - {name: look, call: captioning.Caption, request: {image: {data: "${inputs.scene}"}}}
  - {name: draw, call: generation.TextToImage, request: {prompt: "${look.caption}", image_count: 2}}
  - {name: night, call: generation.ImageToImage, request: {image: {data: "${inputs.scene}"}, model: day2night}}
  - {name: again, call: captioning.Caption, request: {image: "${draw.images[1]}"}, after: [night]}
"""


def test_dependencies_come_from_references_and_after():
    steps = {s.name: s for s in pipeline.parse(SPEC, {"scene"})}
    assert steps["look"].deps == set()
    assert steps["night"].deps == set()
    assert steps["draw"].deps == {"look"}
    assert steps["again"].deps == {"draw", "night"}


def test_json_specs_work_too():
    steps = pipeline.parse('{"steps": [{"name": "a", "call": "captioning.ListModels"}]}', set())
    assert [s.call for s in steps] == ["captioning.ListModels"]


@pytest.mark.parametrize("spec, field", [
    ("", "spec"),
    ("steps: [", "spec"),
    ("steps: []", "spec.steps"),
    ("steps: [{name: a, call: captioning.StreamCaption}]", "spec.steps[0].call"),
    ("steps: [{name: a, call: nope.Nope}]", "spec.steps[0].call"),
    ("steps: [{name: A-b, call: captioning.Caption}]", "spec.steps[0].name"),
    ("steps: [{name: a, call: captioning.ListModels}, {name: a, call: captioning.ListModels}]",
     "spec.steps[1].name"),
    ("steps: [{name: a, call: captioning.Caption, request: {image: {data: '${inputs.nope}'}}}]",
     "spec.steps[0].request"),
    ("steps: [{name: a, call: captioning.ListModels, after: [ghost]}]", "spec.steps[0]"),
    ("steps: [{name: a, call: captioning.ListModels, after: [b]}, {name: b, call: captioning.ListModels, "
     "after: [a]}]", "spec.steps"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ServiceError) as err:
        pipeline.parse(spec, set())
    assert err.value.field_violations[0][0] == field


def test_oversized_spec_is_refused():
    with pytest.raises(ServiceError) as err:
        pipeline.parse("#" * (pipeline.MAX_SPEC_BYTES + 1), set())
    assert err.value.field_violations[0][0] == "spec"


def test_requests_are_built_from_literals_messages_and_interpolation():
    look = captioning_pb2.CaptionResponse(caption="a small red circle")
    drawn = generation_pb2.TextToImageResponse(images=[common_pb2.Image(data=b"0"), common_pb2.Image(data=b"1")])
    results = {"look": look, "draw": drawn}
    values = pipeline._resolve({"prompt": "like ${look.caption}!", "image_count": 3}, results, {}, "w")
    request = pipeline.fill(generation_pb2.TextToImageRequest(), values, "w")
    assert request.prompt == "like a small red circle!" and request.image_count == 3
    values = pipeline._resolve({"image": "${draw.images[1]}", "options": {"beam_size": 2}}, results, {}, "w")
    request = pipeline.fill(captioning_pb2.CaptionRequest(), values, "w")
    assert request.image.data == b"1" and request.options.beam_size == 2
    values = pipeline._resolve({"image": {"data": "${inputs.scene}"}}, results, {"scene": b"png"}, "w")
    assert pipeline.fill(captioning_pb2.CaptionRequest(), values, "w").image.data == b"png"


@pytest.mark.parametrize("values, field", [
    ({"no_such_field": 1}, "w.no_such_field"),
    ({"image_count": "many"}, "w.image_count"),
])
def test_bad_request_values_name_the_field(values, field):
    with pytest.raises(ServiceError) as err:
        pipeline.fill(generation_pb2.TextToImageRequest(), values, "w")
    assert err.value.field_violations[0][0] == field


def test_unresolvable_reference_names_the_field():
    with pytest.raises(ServiceError) as err:
        pipeline._resolve({"image": "${look.images[3]}"}, {"look": captioning_pb2.CaptionResponse()}, {}, "w")
    assert err.value.field_violations[0][0] == "w.image"


def test_the_gateway_does_not_load_torch():
    # The gateway only routes; loading torch would cost it ~500 MB for nothing.
    import subprocess
    import sys

    probe = "import sys, services.gateway.servicer; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
