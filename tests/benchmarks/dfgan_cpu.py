"""DF-GAN's serving cost by chunk size: a full-size random release (nf 32, 256-d DAMSM encoder, a
5,450-word vocabulary, as the CUB weights) served by a real Generation service, TextToImage with
1 and 4 images per call, for the entry options chunk 1 and chunk 8 (docs/generation.md, DF-GAN).

    .venv/bin/python -m tests.benchmarks.dfgan_cpu [--threads 1] [--calls 3]

Random weights cost exactly what trained ones do; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from models.generation.dfgan_vocab import convert
from tests.generation import reference_dfgan
from tests.generation.helpers import text_to_image
from tests.servers import ServiceProcess

CUB_WORDS = 5450


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1", help="SYN_TORCH_THREADS for the service")
    parser.add_argument("--calls", type=int, default=3, help="calls per measurement (the median is shown)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dfgan-bench-"))
    words = reference_dfgan.WORDS + [f"word{i}" for i in range(CUB_WORDS - len(reference_dfgan.WORDS))]
    release = reference_dfgan.write_release(root / "bird", nf=32, nhidden=256, ninput=300, words=words)
    convert(release.captions, root / "bird" / "vocab.json")
    print("| entry chunk | ready (load + warm-up) | 1 image per call | 4 images per call | server peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for chunk in (1, 8):
        (root / "dfgan.model.yaml").write_text(yaml.safe_dump({
            "task": "text-to-image", "family": "dfgan", "path": "bird/state_epoch_1220.pth",
            "options": {"text_encoder": "bird/text_encoder200.pth", "vocabulary": "bird/vocab.json", "chunk": chunk}}))
        started = time.perf_counter()
        service = ServiceProcess("services.generation", {"SYN_MODEL_REPOSITORY": str(root),
                                                         "SYN_TORCH_THREADS": args.threads}, root).start(timeout_s=900)
        ready = time.perf_counter() - started
        try:
            medians = []
            for count in (1, 4):
                times = []
                for seed in range(1, args.calls + 1):
                    started = time.perf_counter()
                    text_to_image(service.target, "this bird has a red crown", image_count=count, seed=seed,
                                  model="dfgan", timeout=900)
                    times.append(time.perf_counter() - started)
                medians.append(statistics.median(times))
            with open(f"/proc/{service.process.pid}/status") as status:
                peak = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))
        finally:
            service.stop()
        print(f"| {chunk} | {ready:.0f} s | {medians[0]:.1f} s | {medians[1]:.1f} s | {peak:,} MB |")


if __name__ == "__main__":
    main()
