"""DF-GAN's vocabulary: a one-time conversion of the released caption pickle to JSON, and DAMSM's tokeniser.

DF-GAN (and AttnGAN before it) ship the vocabulary only inside `captions_DAMSM.pickle` /
`captions.pickle`: `[train_captions, test_captions, ixtoword, wordtoix]`. The service never
unpickles anything; convert the file once::

    python -m models.generation.dfgan_vocab data/birds/captions_DAMSM.pickle bird-vocab.json

This is the only place a pickle is read, through an Unpickler that rebuilds builtin lists,
dicts, strings and ints and refuses every other global (a pickle that names `os.system`, or
any class, fails without running it). Only `wordtoix` is written; the captions are dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import re
import sys
from pathlib import Path

FORMAT = "dfgan-vocabulary/1"
# The globals a caption pickle may name: plain containers and scalars, nothing callable beyond them.
# ("__builtin__": the same names as Python 2 pickles spell them.)
ALLOWED_GLOBALS = {(module, name) for module in ("builtins", "__builtin__") for name in ("list", "dict", "str", "int")}
# DAMSM: nltk's RegexpTokenizer(r'\w+') on the lower-cased sentence.
WORD = re.compile(r"\w+")


class VocabularyError(ValueError):
    """A caption pickle or vocabulary JSON that cannot be used."""


class CaptionUnpickler(pickle.Unpickler):
    """Rebuilds only builtin list / dict / str / int; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise VocabularyError(f"the pickle names the global {module}.{name}; a caption pickle holds only lists, "
                              "dicts, strings and ints, so it is not read")


def read_caption_pickle(data: bytes) -> dict[str, int]:
    """`wordtoix` of a `[train_captions, test_captions, ixtoword, wordtoix]` pickle, checked."""
    try:
        # encoding: AttnGAN-era files were written by Python 2, whose str pickles as bytes.
        loaded = CaptionUnpickler(io.BytesIO(data), encoding="latin1").load()
    except VocabularyError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is reported as such
        raise VocabularyError(f"not a readable pickle: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(loaded, list) or len(loaded) != 4:
        raise VocabularyError("expected [train_captions, test_captions, ixtoword, wordtoix], got "
                              f"{type(loaded).__name__}{f' of {len(loaded)}' if isinstance(loaded, list) else ''}")
    ixtoword, wordtoix = loaded[2], loaded[3]
    if not isinstance(wordtoix, dict) or not wordtoix:
        raise VocabularyError("the fourth item (wordtoix) is not a non-empty dict")
    return check_wordtoix(wordtoix, ixtoword)


def check_wordtoix(wordtoix: dict, ixtoword: dict | None = None) -> dict[str, int]:
    """Words to distinct indices 0..n-1 (DAMSM's embedding has exactly n rows); agreeing with ixtoword."""
    bad = [w for w, i in wordtoix.items() if not isinstance(w, str) or type(i) is not int]
    if bad:
        raise VocabularyError(f"wordtoix maps something other than words to integers: {bad[:5]!r}")
    if sorted(wordtoix.values()) != list(range(len(wordtoix))):
        raise VocabularyError(f"wordtoix's {len(wordtoix)} indices are not 0..{len(wordtoix) - 1}, each once")
    if ixtoword is not None:
        if not isinstance(ixtoword, dict) or any(ixtoword.get(i) != w for w, i in wordtoix.items()):
            raise VocabularyError("ixtoword (the third item) does not invert wordtoix")
    return dict(wordtoix)


def convert(source: Path, target: Path) -> dict:
    """Write the vocabulary JSON for the caption pickle `source`; returns what was written."""
    data = Path(source).read_bytes()
    wordtoix = read_caption_pickle(data)
    document = {"format": FORMAT, "source": Path(source).name, "source_sha256": hashlib.sha256(data).hexdigest(),
                "words": len(wordtoix), "wordtoix": wordtoix}
    Path(target).write_text(json.dumps(document, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return document


def read_vocabulary(path: Path) -> dict[str, int]:
    """The `wordtoix` of a JSON file `convert` wrote."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VocabularyError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("wordtoix"), dict):
        raise VocabularyError(f"{path} is not a vocabulary written by `python -m models.generation.dfgan_vocab` "
                              f"(format {FORMAT})")
    try:
        return check_wordtoix(document["wordtoix"])
    except VocabularyError as exc:
        raise VocabularyError(f"{path}: {exc}") from None


def tokenize(prompt: str) -> list[str]:
    """DF-GAN's sampling tokeniser: lower-case, `\\w+` runs, non-ASCII characters dropped from each word."""
    words = WORD.findall(prompt.replace("\ufffd\ufffd", " ").lower())
    return [ascii_word for w in words if (ascii_word := w.encode("ascii", "ignore").decode("ascii"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.generation.dfgan_vocab", description=__doc__.split("\n")[0])
    parser.add_argument("pickle", type=Path, help="captions_DAMSM.pickle or captions.pickle from the DF-GAN data")
    parser.add_argument("json", type=Path, help="where to write the vocabulary (an entry's options.vocabulary)")
    args = parser.parse_args(argv)
    try:
        document = convert(args.pickle, args.json)
    except (OSError, VocabularyError) as exc:
        print(f"error: {args.pickle}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.json}: {document['words']} words from {args.pickle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
