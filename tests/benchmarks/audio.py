"""Audio service: STFT features (seconds of audio per second) and sound-source localisation (calls per second).

Features: 1 s clips at 16 kHz, default options (log-mel, n_fft 512, hop 128, Hamming, 64 mels); the extra
section compares our torch STFT with librosa's on the same clips in the same run. Localisation: held-out
two-object ShapesWorld scenes (64x64 PNG + their 1 s clip) against the built-in `localization` checkpoint.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from models.audio.features import FeatureConfig, compute
from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.tensors import array_to_pcm
from synesthesia.v1 import audio_pb2, audio_pb2_grpc, common_pb2
from tests.benchmarks.harness import THREADS, Scenario, torch_threads

RATE = 16000
_rng = np.random.default_rng(0)
CLIPS = [(0.3 * _rng.standard_normal(RATE)).astype(np.float32) for _ in range(32)]
SCENES = [render_scene(seed, objects=2) for seed in EVAL_SEEDS[:32]]


def _features_call(channel):
    stub = audio_pb2_grpc.AudioStub(channel)
    requests = [audio_pb2.ExtractFeaturesRequest(audio=common_pb2.AudioClip(
        pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(c), sample_rate_hz=RATE))) for c in CLIPS]

    def call(i: int):
        return stub.ExtractFeatures(requests[i % len(requests)], timeout=60)

    return call


def _features_in_process():
    stack = torch.from_numpy(np.stack(CLIPS))
    config = FeatureConfig()

    def run(batch: int):
        with torch_threads(), torch.inference_mode():
            return compute(stack[:batch], RATE, config)

    return run


def _localize_call(channel):
    stub = audio_pb2_grpc.AudioStub(channel)
    requests = [audio_pb2.LocalizeRequest(
        image=common_pb2.Image(data=png_bytes(s.image)),
        audio=common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(s.audio), sample_rate_hz=RATE)))
        for s in SCENES]

    def call(i: int):
        return stub.Localize(requests[i % len(requests)], timeout=60)

    return call


def _localize_in_process():
    from models.audio.localize import load_localizer, localize

    model = load_localizer().model
    images, clips = [s.image for s in SCENES], [s.audio for s in SCENES]

    def run(batch: int):
        with torch_threads(), torch.inference_mode():
            return localize(model, images[:batch], clips[:batch])

    return run


SCENARIOS = [
    Scenario(name="audio.ExtractFeatures (1 s log-mel)", module="services.audio", make_call=_features_call,
             items_per_call=1.0, unit="s audio", in_process=_features_in_process, min_calls=64,
             calls_per_worker=8),
    Scenario(name="audio.Localize (64x64 + 1 s)", module="services.audio", make_call=_localize_call,
             unit="calls", in_process=_localize_in_process, min_calls=48, calls_per_worker=4),
]


def _rate(fn, seconds_of_audio: float, min_seconds: float = 1.0) -> float:
    fn()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds or count < 2:
        fn()
        count += 1
    return count * seconds_of_audio / elapsed


def extra_sections() -> list[str]:
    import librosa

    clips = np.stack(CLIPS)
    seconds = clips.shape[0] * clips.shape[1] / RATE
    torch_clips = torch.from_numpy(clips)
    rows = []
    for label, config in [("magnitude STFT", FeatureConfig(kind="magnitude")), ("log-mel", FeatureConfig())]:
        def ours(config=config):
            with torch_threads(), torch.inference_mode():
                compute(torch_clips, RATE, config)

        if config.kind == "magnitude":
            def theirs():
                np.abs(librosa.stft(clips, n_fft=512, hop_length=128, window="hamming", center=False))
        else:
            def theirs():
                mel = librosa.feature.melspectrogram(y=clips, sr=RATE, n_fft=512, hop_length=128, window="hamming",
                                                     center=False, n_mels=64, htk=True, norm=None, power=2.0)
                np.log(mel + 1e-6)

        # librosa's FFT (numpy's pocketfft) is single-threaded too.
        ours_rate, theirs_rate = _rate(ours, seconds), _rate(theirs, seconds)
        rows.append(f"| {label} | {ours_rate:,.0f} | {theirs_rate:,.0f} | {ours_rate / theirs_rate:.2f} |")
    table = "\n".join([
        f"In-process feature extraction on {len(CLIPS)} clips of 1 s at 16 kHz (n_fft 512, hop 128, Hamming, "
        f"torch threads {THREADS}), seconds of audio per second:",
        "",
        "| features | ours (torch.stft) | librosa | ours / librosa |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ])
    return [table]
