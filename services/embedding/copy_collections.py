"""Copy collections from one store to another: `python -m services.embedding.copy_collections SOURCE DEST`.

SOURCE and DEST are what SYN_EMBEDDING_STORE takes: an index directory (the embedded FAISS
store) or a postgresql:// URL. The stored vectors are copied as they are (nothing is
re-embedded), with ids, metadata, the model name and weights fingerprint, the dimension and
the index kind (or --index-kind), so the embedding service serves the copy exactly as it
served the original. A collection that already exists in DEST must hold the same model,
fingerprint and dimension; its items are upserted (copying again is safe, and resumes a
copy that was cut short). Stop the embedding service that owns a FAISS directory first
(one process per directory); a PostgreSQL source can stay in use.

    python -m services.embedding.copy_collections run/index postgresql://syn:secret@db:5432/syn
    python -m services.embedding.copy_collections postgresql://... /backups/index --collection photos
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from services.embedding.store import INDEX_KINDS, CollectionStore, StoreError, open_store


@dataclass
class Copied:
    name: str
    items: int


def copy_collection(source: CollectionStore, dest: CollectionStore, name: str, batch_size: int = 1000,
                    index_kind: str | None = None) -> Copied:
    info = source.get(name)
    if info is None:
        raise StoreError("collection", f"no collection {name!r} in {source.location}")
    target = dest.create(name, info.model, info.fingerprint, info.dimension, index_kind or info.index_kind)
    if (target.model, target.fingerprint, target.dimension) != (info.model, info.fingerprint, info.dimension):
        raise StoreError("collection", f"{dest.location} already has a collection {name!r} of model "
                                       f"{target.model!r} ({target.dimension}-d, fingerprint {target.fingerprint[:12]})"
                                       f"; the source's is {info.model!r} ({info.dimension}-d, "
                                       f"{info.fingerprint[:12]}): drop or rename one first")
    copied = 0
    for batch in source.items(name, batch_size):
        dest.upsert(name, [item.id for item in batch], np.stack([item.vector for item in batch]),
                    [item.metadata for item in batch])
        copied += len(batch)
    return Copied(name, copied)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.embedding.copy_collections",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="index directory or postgresql:// URL to read")
    parser.add_argument("dest", help="index directory or postgresql:// URL to write")
    parser.add_argument("--collection", action="append", default=[],
                        help="copy only this collection (repeatable; default: all)")
    parser.add_argument("--index-kind", choices=INDEX_KINDS, help="index kind in DEST (default: the source's)")
    parser.add_argument("--batch-size", type=int, default=1000, help="items per write (default 1000)")
    args = parser.parse_args(argv)
    try:
        with open_store(args.source) as source, open_store(args.dest) as dest:
            dest.list()  # reachable and readable, before anything is read from the source
            names = args.collection or [info.name for info in source.list()]
            for name in names:
                done = copy_collection(source, dest, name, args.batch_size, args.index_kind)
                print(f"{done.name}: {done.items} items copied to {dest.location}")
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
