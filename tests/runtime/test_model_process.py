"""SYN_MODEL_PROCESS: each model batches and runs in a worker process; answers are the in-thread ones.

Real services side by side (the default, model thread in the service, and one with worker processes),
called through their real gRPC APIs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import pickle
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import psutil
import pytest
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from services.runtime.model_process import ITEM, WorkerProcess
from services.runtime.settings import Settings
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


def test_a_service_with_several_models_gives_each_its_own_worker_and_answers_as_in_thread(shared_service):
    """The generation service's models (text-to-image and the image-to-image ones) are started together
    (their workers launched at once, then waited for), one process each, and each answers exactly as
    the in-thread service does."""
    from tests.generation.helpers import SERVICE, decode_png, image_to_image, list_models, png, text_to_image

    plain, worker = shared_service(SERVICE), shared_service(SERVICE, WORKER)
    names = sorted(m.name for m in list_models(worker.target))
    children = _workers(worker.process.pid)
    assert len(names) > 1 and len(children) == len(names) and len({c.pid for c in children}) == len(names)
    picture = png(np.asarray(SCENES[0]))
    for name in names:
        if name == "text2image":
            ours, theirs = (text_to_image(s.target, "a red circle", seed=7, model=name) for s in (worker, plain))
            got, expected = (np.stack([decode_png(i.data) for i in r.images]) for r in (ours, theirs))
        else:
            got, expected = (decode_png(image_to_image(s.target, picture, name).image.data) for s in (worker, plain))
        assert np.array_equal(got, expected), name


def test_auto_runs_workers_only_on_a_cpu_with_two_usable_cpus():
    from services.runtime.model_process import wanted

    assert wanted("auto", "cpu", cpus=lambda: 2.0)[0] and wanted("auto", "cpu", cpus=lambda: 16.0)[0]
    assert not wanted("auto", "cpu", cpus=lambda: 1.0)[0] and not wanted("auto", "cpu", cpus=lambda: 1.5)[0]
    use, why = wanted("auto", "cuda:0", cpus=lambda: 16.0)
    assert not use and "cuda:0" in why and "SYN_MODEL_PROCESS=auto" in why
    assert wanted("true", "cuda:0", cpus=lambda: 1.0)[0] and not wanted("false", "cpu", cpus=lambda: 16.0)[0]


@pytest.mark.parametrize("raw, stored", [("", "auto"), ("AUTO", "auto"), ("yes", "true"), ("1", "true"),
                                         ("off", "false")])
def test_the_setting_takes_auto_and_the_boolean_spellings(raw, stored):
    from services.runtime.settings import Settings, read_settings

    assert read_settings(Settings, environ={"SYN_MODEL_PROCESS": raw}).model_process == stored


def test_a_value_that_is_neither_auto_nor_boolean_stops_start_up_naming_the_setting(service_process):
    service = service_process("captioning", {"SYN_MODEL_PROCESS": "sometimes"}, wait=False)
    assert service.process.wait(timeout=120) != 0
    assert "SYN_MODEL_PROCESS='sometimes' must be auto, true or false" in service.log_path.read_text()


def _cgroup_root(tmp_path, cgroup: str, files: dict[str, str]):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        (tmp_path / "sys/fs/cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys/fs/cgroup" / name).write_text(text)
    return tmp_path


def test_usable_cpus_are_lowered_by_a_cgroup_quota(tmp_path, monkeypatch):
    """A pod's `limits.cpu` or `docker run --cpus` leaves the affinity at every CPU of the machine and
    sets a quota: cgroup v2's cpu.max in the process's cgroup or above it, or v1's cfs quota."""
    import os

    from services.runtime.model_process import usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cpus(_cgroup_root(tmp_path / "none", "0::/\n", {})) == 8
    v2 = _cgroup_root(tmp_path / "v2", "0::/kubepods/pod1/c1\n",
                      {"kubepods/cpu.max": "max 100000\n", "kubepods/pod1/cpu.max": "150000 100000\n",
                       "kubepods/pod1/c1/cpu.max": "max 100000\n"})
    assert usable_cpus(v2) == 1.5
    v1 = _cgroup_root(tmp_path / "v1", "4:memory:/docker/x\n2:cpu,cpuacct:/docker/x\n0::/\n",
                      {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "300000\n",
                       "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"})
    assert usable_cpus(v1) == 3
    unlimited = _cgroup_root(tmp_path / "v1max", "2:cpu,cpuacct:/\n",
                             {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert usable_cpus(unlimited) == 8


def test_the_default_is_auto_and_the_service_says_what_it_chose(service_process):
    """Started without the tests' pin: on this machine's CPUs auto runs a worker when two are usable, and
    the log names the choice either way."""
    from services.runtime.model_process import usable_cpus

    service = service_process("captioning", {"SYN_MODEL_PROCESS": ""})  # empty = the default
    workers = _workers(service.process.pid)
    log = service.log_path.read_text()
    if usable_cpus() >= 2:
        assert len(workers) == 1 and "SYN_MODEL_PROCESS=auto: models run in a worker process each" in log
    else:
        assert not workers and "SYN_MODEL_PROCESS=auto: models run in the service process" in log
    with grpc.insecure_channel(service.target, options=OPTIONS) as channel:
        assert captioning_pb2_grpc.CaptioningStub(channel).Caption(caption_request(encode(SCENES[0])),
                                                                   timeout=60).caption


@dataclasses.dataclass
class _Job:
    payload: object


class _Servicer:
    def forward(self, items):
        return items


def test_an_item_that_cannot_cross_the_pipe_fails_alone_and_the_next_one_is_sent():
    """The service's side of the pipe, against a plain pipe end standing in for the worker."""
    servicer = _Servicer()
    process = WorkerProcess("test", servicer, servicer.forward, Settings(), "toy")
    ours, theirs = multiprocessing.Pipe()
    process._conn = ours

    async def scenario():
        with pytest.raises(TypeError):  # a lock does not pickle
            await process.submit(_Job([threading.Lock()]))
        assert not process.busy  # nothing is left waiting for an answer that cannot come
        sent = asyncio.ensure_future(process.submit(_Job(b"png")))
        await asyncio.sleep(0)
        message = pickle.loads(theirs.recv_bytes())
        assert message[0] == ITEM and message[2] == _Job(b"png") and process.busy
        sent.cancel()

    asyncio.run(scenario())
    ours.close()
    theirs.close()
