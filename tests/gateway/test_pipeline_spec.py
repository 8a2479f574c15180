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


# --- hostile specs (issue 13): every cost capped before it is paid, each refusal naming its setting ---

def _nested_aliases(levels: int = 6) -> str:
    """~400 bytes that expand to 10^(levels+1) nodes through nested YAML aliases."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(levels)]
    return "\n".join(lines) + f"\nsteps: [{{name: s, call: captioning.ListModels, request: {{x: *{chr(97 + levels)}}}}}]\n"


@pytest.mark.parametrize("spec, code, setting", [
    (_nested_aliases(), "INVALID_ARGUMENT", "anchors and aliases"),
    ("steps: &s [{name: a, call: captioning.ListModels}]\nagain: *s", "INVALID_ARGUMENT", "anchors and aliases"),
    ("a: &a [*a]\nsteps: []", "INVALID_ARGUMENT", "anchors and aliases"),  # a recursive alias
    ("steps: " + "[" * 20_000 + "]" * 20_000, "RESOURCE_EXHAUSTED", "SYN_PIPELINE_MAX_DEPTH"),
    ("steps: [{name: a, call: generation.TextToImage, request: {image_count: " + "9" * 5000 + "}}]",
     "INVALID_ARGUMENT", "SYN_PIPELINE_MAX_INTEGER_DIGITS"),
    ("steps:\n" + "".join(f"  - {{name: s{i}, call: captioning.ListModels}}\n" for i in range(33)),
     "RESOURCE_EXHAUSTED", "SYN_PIPELINE_MAX_STEPS"),
    ("#" * (pipeline.MAX_SPEC_BYTES + 1), "RESOURCE_EXHAUSTED", "SYN_PIPELINE_MAX_SPEC_BYTES"),
])
def test_hostile_specs_are_refused_quickly_by_name(spec, code, setting):
    with pytest.raises(ServiceError) as err:
        pipeline.parse(spec, set())
    assert err.value.code.name == code
    assert setting in err.value.message
    assert err.value.field_violations[0][0].startswith("spec")


def test_yaml_errors_say_where_without_echoing_the_spec():
    with pytest.raises(ServiceError) as err:
        pipeline.parse("steps: [" + "x" * 5000, set())
    assert "line 1" in err.value.message and "x" * 100 not in err.value.message


@pytest.mark.parametrize("ref", ["${look.__class__}", "${look.__class__.__mro__}", "${look.caption.__len__}",
                                 "${look.DESCRIPTOR}", "${look.words[" + "9" * 5000 + "]}", "${look.caption[0]}",
                                 "${look.words[2]}"])
def test_references_reach_proto_fields_only(ref):
    look = captioning_pb2.CaptionResponse(caption="a red circle", words=[captioning_pb2.CaptionWord(text="a")])
    with pytest.raises(ServiceError) as err:
        pipeline._resolve({"prompt": f"x {ref}"}, {"look": look}, {}, "w")
    assert err.value.code.name == "INVALID_ARGUMENT"
    assert err.value.field_violations[0][0] == "w.prompt"
    assert "<" not in err.value.message  # no reprs of Python objects


def test_interpolation_is_capped_and_takes_scalars_only():
    big = captioning_pb2.CaptionResponse(caption="w" * 60_000)
    results = {"big": big, "draw": generation_pb2.TextToImageResponse(images=[common_pb2.Image(data=b"png")])}
    with pytest.raises(ServiceError) as err:
        pipeline._resolve({"prompt": "${big.caption} " * 16}, results, {}, "w")
    assert err.value.code.name == "RESOURCE_EXHAUSTED" and "SYN_PIPELINE_MAX_INTERPOLATED_BYTES" in err.value.message
    with pytest.raises(ServiceError) as err:
        pipeline._resolve({"prompt": "see ${draw.images}"}, results, {}, "w")
    assert "whole string" in err.value.message
    assert pipeline._resolve({"prompt": "${big.caption}"}, results, {}, "w")["prompt"] == "w" * 60_000


def test_limits_come_from_settings(monkeypatch):
    monkeypatch.setenv("SYN_PIPELINE_MAX_STEPS", "1")
    limits = pipeline.PipelineLimits.from_env()
    assert limits.max_steps == 1 and limits.max_depth == pipeline.DEFAULT_LIMITS.max_depth
    with pytest.raises(ServiceError) as err:
        pipeline.parse("steps: [{name: a, call: captioning.ListModels}, {name: b, call: captioning.ListModels}]",
                       set(), limits)
    assert "SYN_PIPELINE_MAX_STEPS" in err.value.message
