"""SYN_MODEL_PROCESS: each model batches and runs in a worker process; answers are the in-thread ones.

Real services side by side (the default, model thread in the service, and one with worker processes),
called through their real gRPC APIs.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import psutil
import pytest
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2, embedding_pb2, embedding_pb2_grpc
from tests.captioning.conftest import OPTIONS, caption_request, encode, stream_request
from tests.runtime.helpers import field_violations, metrics_text, wait_until
from tests.servers import free_port

WORKER = {"SYN_MODEL_PROCESS": "true"}
SCENES = [render_scene(seed).image for seed in EVAL_SEEDS[30100:30104]]


def _workers(pid: int) -> list[psutil.Process]:
    """The service's model worker processes (multiprocessing's spawn children)."""
    return [p for p in psutil.Process(pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


@pytest.fixture(scope="module")
def captioners(shared_service):
    metrics_port = free_port()
    worker = shared_service("captioning", {**WORKER, "SYN_METRICS_PORT": str(metrics_port)})
    with grpc.insecure_channel(shared_service("captioning").target, options=OPTIONS) as plain, \
            grpc.insecure_channel(worker.target, options=OPTIONS) as remote:
        yield (captioning_pb2_grpc.CaptioningStub(plain), captioning_pb2_grpc.CaptioningStub(remote), worker,
               metrics_port)


def _same_caption(a: captioning_pb2.CaptionResponse, b: captioning_pb2.CaptionResponse) -> None:
    assert a.caption == b.caption and list(a.warnings) == list(b.warnings)
    assert a.log_probability == pytest.approx(b.log_probability, abs=1e-5)
    for x, y in zip(a.words, b.words, strict=True):
        assert x.text == y.text and x.log_probability == pytest.approx(y.log_probability, abs=1e-5)
        assert (x.attention.image_width_px, x.attention.image_height_px) == (y.attention.image_width_px,
                                                                             y.attention.image_height_px)
        np.testing.assert_allclose(from_tensor(x.attention.values), from_tensor(y.attention.values), atol=1e-6)


def test_the_model_runs_in_a_child_process_of_the_service(captioners):
    *_, worker, _ = captioners
    children = _workers(worker.process.pid)
    assert len(children) == 1 and children[0].is_running()


@pytest.mark.parametrize("beam", [1, 3])
def test_captions_from_the_worker_equal_the_in_thread_ones(captioners, beam):
    plain, remote, *_ = captioners
    # A 64 px scene; one of another size (the attention maps refer to the size sent: set in the worker and
    # copied back); one that is plainly not ShapesWorld (its warning is set in the worker too).
    odd_size = np.asarray(Image.fromarray(np.asarray(SCENES[1])).resize((96, 48)))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for picture in (SCENES[0], odd_size, noise):
        request = caption_request(encode(picture), beam, attention=True)
        ours, theirs = remote.Caption(request, timeout=60), plain.Caption(request, timeout=60)
        _same_caption(ours, theirs)
        assert ours.words[0].attention.image_width_px == np.asarray(picture).shape[1]
    assert remote.Caption(caption_request(encode(noise)), timeout=60).warnings  # the note crossed back


def test_streamed_words_cross_the_process_as_they_settle(captioners):
    _, remote, *_ = captioners
    data = encode(SCENES[2])
    unary = remote.Caption(caption_request(data, 3, attention=True), timeout=60)
    messages = list(remote.StreamCaption(stream_request(data, 3, attention=True), timeout=60))
    assert [m.word.text for m in messages] == [w.text for w in unary.words]
    assert [m.is_final for m in messages] == [False] * (len(messages) - 1) + [True]


def test_a_bad_picture_fails_its_own_call_with_the_field_named(captioners):
    plain, remote, *_ = captioners
    errors = []
    for stub in (remote, plain):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Caption(caption_request(b"\x89PNG\r\n\x1a\n not really"), timeout=60)
        errors.append(caught.value)
    # Decoded in the worker's batch; its structured error crossed back whole.
    assert errors[0].code() == errors[1].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(errors[0]) == field_violations(errors[1])
    assert [f for f, _ in field_violations(errors[0])] == ["image.data"]
    assert remote.Caption(caption_request(encode(SCENES[3])), timeout=60).caption


def test_concurrent_calls_share_batches_in_the_worker_and_the_service_exports_them(captioners):
    plain, remote, _, metrics_port = captioners
    requests = [caption_request(encode(SCENES[i % len(SCENES)])) for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        ours = list(pool.map(lambda r: remote.Caption(r, timeout=120), requests))
    assert [r.caption for r in ours] == [plain.Caption(r, timeout=60).caption for r in requests]
    # The worker's batcher metrics, replayed into the service's registry.
    lines = {line.split()[0]: float(line.split()[1]) for line in metrics_text(metrics_port).splitlines()
             if line.startswith("syn_batch_size_") and 'batcher="captioning:' in line}
    count = next(v for k, v in lines.items() if k.startswith("syn_batch_size_count"))
    total = next(v for k, v in lines.items() if k.startswith("syn_batch_size_sum"))
    assert total >= 24 and total / count > 1


def test_embeddings_from_the_worker_equal_the_in_thread_ones(shared_service, tmp_path_factory):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pictures = [*SCENES, noise]
    images = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=encode(p)) for p in pictures])
    texts = embedding_pb2.EmbedTextsRequest(texts=["a red circle", "two blue squares"])
    answers = []
    for env in ({}, WORKER):
        index = {"SYN_EMBEDDING_INDEX_DIR": str(tmp_path_factory.mktemp("index"))}
        with grpc.insecure_channel(shared_service("embedding", {**env, **index}).target, options=OPTIONS) as channel:
            stub = embedding_pb2_grpc.EmbeddingStub(channel)
            embedded = stub.EmbedImages(images, timeout=60)
            answers.append((from_tensor(embedded.embeddings), list(embedded.warnings),
                            from_tensor(stub.EmbedTexts(texts, timeout=60).embeddings)))
    (ours_images, our_warnings, ours_texts), (their_images, their_warnings, their_texts) = answers[1], answers[0]
    np.testing.assert_allclose(ours_images, their_images, atol=1e-5)
    np.testing.assert_allclose(ours_texts, their_texts, atol=1e-5)
    # The noise picture's note is made in the worker, into the list the handler holds.
    assert our_warnings == their_warnings and len(our_warnings) == 1


def test_a_worker_that_exits_fails_its_calls_with_unavailable_and_is_started_again(service_process):
    service = service_process("captioning", WORKER)
    (child,) = _workers(service.process.pid)
    request = caption_request(encode(SCENES[0]))
    with grpc.insecure_channel(service.target, options=OPTIONS) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        expected = stub.Caption(request, timeout=60).caption
        child.send_signal(signal.SIGKILL)
        # Reaped by the service (no zombie left behind).
        wait_until(lambda: not child.is_running(), 30, "the worker to be reaped")
        # A new worker takes seconds to import, load and self-test: until then calls get UNAVAILABLE at once.
        with pytest.raises(grpc.RpcError) as caught:
            stub.Caption(request, timeout=60)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "SYN_MODEL_PROCESS" in caught.value.details()
        # The service itself keeps answering what needs no worker.
        assert stub.ListModels(captioning_pb2.ListCaptioningModelsRequest(), timeout=30).models

        def answers() -> bool:
            try:
                return stub.Caption(request, timeout=60).caption == expected
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                return False

        wait_until(answers, 120, "the restarted worker to answer")
        (again,) = _workers(service.process.pid)
        assert again.pid != child.pid


def test_a_stopped_service_stops_its_worker_after_the_drain(service_process):
    service = service_process("captioning", WORKER)
    (child,) = _workers(service.process.pid)
    assert service.stop() == 0  # SIGTERM to the whole process group: the worker leaves it to the service
    wait_until(lambda: not child.is_running(), 30, "the worker to exit")
    assert "restart" not in service.log_path.read_text()
