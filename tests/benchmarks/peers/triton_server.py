"""Triton Inference Server (PyTriton's bundled tritonserver, Python backend) serving work.py's
captioning and embedding models on loopback, max batch 16, 5 ms queue delay, one instance each.

Run inside the triton environment: `python triton_server.py GRPC_PORT HTTP_PORT METRICS_PORT`.
CPU workaround: none needed beyond what PyTriton does itself (the Python backend proxies each
batch to this process over shared memory; no CUDA is touched when no GPU is present).
"""

from __future__ import annotations

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from tests.benchmarks.peers import work


def main() -> None:
    grpc_port, http_port, metrics_port = (int(a) for a in sys.argv[1:4])
    work.set_threads()
    captioner, embedder = work.Captioning(), work.Embedding()

    @batch
    def caption(image: np.ndarray):
        found = captioner([row[0] for row in image])
        return {"caption": np.array([[text.encode()] for text, _ in found], dtype=object),
                "log_probability": np.array([[lp] for _, lp in found], dtype=np.float32)}

    @batch
    def embed(image: np.ndarray):
        return {"embedding": embedder([row[0] for row in image])}

    batching = ModelConfig(max_batch_size=work.MAX_BATCH_SIZE,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=work.MAX_WAIT_MS * 1000))
    config = TritonConfig(grpc_address="127.0.0.1", grpc_port=grpc_port, http_address="127.0.0.1",
                          http_port=http_port, metrics_port=metrics_port, exit_on_error=True)
    with Triton(config=config) as triton:
        triton.bind(model_name="captioning", infer_func=caption,
                    inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
                    outputs=[Tensor(name="caption", dtype=bytes, shape=(1,)),
                             Tensor(name="log_probability", dtype=np.float32, shape=(1,))],
                    config=batching)
        triton.bind(model_name="embedding", infer_func=embed,
                    inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
                    outputs=[Tensor(name="embedding", dtype=np.float32, shape=(embedder.dim,))],
                    config=batching)
        triton.serve()


if __name__ == "__main__":
    main()
