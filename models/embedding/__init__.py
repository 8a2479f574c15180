"""Joint image-text embedding on ShapesWorld (a small CLIP).

Modules: `tokenizer` (word ids, <unk> for unknown words), `network` (image CNN,
text GRU, shared L2-normalised space, InfoNCE and VSE++ losses), `data`
(training batches with their false-negative masks), `checkpoint` (loading the
shipped `embedding`), `train` (CLI), `evaluate` (Recall@K both ways, the
reported metric), `interface` (the embedder Protocols), `builtin` and `hf_*` (the families: models/families.py).
User doc: docs/embedding.md.
"""
