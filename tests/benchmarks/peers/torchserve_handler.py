"""TorchServe handlers (`module:function` entry points) running work.py's models.

TorchServe hands each batch as a list of requests whose gRPC input map is {"data": PNG bytes};
the captioning handler returns one JSON object per request, the embedding handler the float32
vector's bytes. The repository is on the worker's PYTHONPATH (the launcher exports it).
"""

from __future__ import annotations

import json

_models: dict = {}


def _model(kind: str):
    if kind not in _models:
        from tests.benchmarks.peers import work

        work.set_threads()
        _models[kind] = work.Captioning() if kind == "captioning" else work.Embedding()
    return _models[kind]


def _pngs(data: list[dict]) -> list[bytes]:
    return [bytes(row.get("data") or row.get("body")) for row in data]


def captioning(data, context):
    if data is None:  # TorchServe's initialisation call
        _model("captioning")
        return None
    return [json.dumps({"caption": text, "log_probability": lp}) for text, lp in _model("captioning")(_pngs(data))]


def embedding(data, context):
    if data is None:
        _model("embedding")
        return None
    return [bytes(vector.tobytes()) for vector in _model("embedding")(_pngs(data))]
