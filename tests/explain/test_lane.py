"""The explanation lane: a long explanation neither blocks normal calls nor queues without bound."""

from __future__ import annotations


import grpc
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2, explain_pb2
from tests.explain.conftest import png

E = explain_pb2


def test_a_long_explanation_leaves_captions_flowing_and_a_second_is_refused(service_process):
    proc = service_process("captioning", {"SYN_EXPLAIN_MAX_PENDING": "1", "SYN_EXPLAIN_MAX_EVALUATIONS": "4096"})
    scene = render_scene(EVAL_SEEDS.start + 900_041, objects=2)
    image = common_pb2.Image(data=png(scene.image))
    heavy = E.ExplainCaptionRequest(image=image, caption=scene.captions[0], word_index=2,
                                    methods=[E.EXPLAIN_METHOD_OCCLUSION],
                                    options=E.ExplainOptions(occlusion_window_px=8, occlusion_stride_px=1))
    with grpc.insecure_channel(proc.target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        stub.Caption(captioning_pb2.CaptionRequest(image=image), timeout=60)  # warm
        running = stub.ExplainCaption.future(heavy, timeout=300)  # 57 x 57 = 3249 forward passes
        # Normal calls keep being answered while it runs.
        for _ in range(3):
            caption = stub.Caption(captioning_pb2.CaptionRequest(image=image), timeout=60)
            assert caption.caption
        assert not running.done()
        with pytest.raises(grpc.RpcError) as caught:
            stub.ExplainCaption(E.ExplainCaptionRequest(image=image, caption=scene.captions[0],
                                                        methods=[E.EXPLAIN_METHOD_GRAD_CAM]), timeout=60)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SYN_EXPLAIN_MAX_PENDING" in caught.value.details()
        running.cancel()  # the lane stops the work at its next chunk and takes the next call
        answer = stub.ExplainCaption(E.ExplainCaptionRequest(image=image, caption=scene.captions[0],
                                                             methods=[E.EXPLAIN_METHOD_GRAD_CAM]), timeout=120)
        assert len(answer.explanations) == 1
