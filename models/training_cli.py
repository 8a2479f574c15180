"""The command line every `python -m models.<x>.train*` shares.

Each training script declares its knobs as an `Options` dataclass (and, for
the image-to-image GANs, the network's config dataclass); this module turns
the fields into `--kebab-case` flags and adds the flags every script has:
`--fresh`, `--smoke`, `--run-dir`, `--checkpoint-dir`, `--threads`.

A smoke run applies the script's few-step overrides and never touches `run/`
or `models/checkpoints/` unless told: it writes to `--checkpoint-dir` or a
temporary directory, with its resume state in `<that>/run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from models.training import RUN_DIR, command_line, passive_openmp_or_reexec

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def option_type(default: Any) -> Callable[[str], Any]:
    """argparse type for a dataclass field: `--flag true|false` for booleans (bool("false") is True)."""
    if isinstance(default, bool):
        def parse(text: str) -> bool:
            if text.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
            return text.lower() in TRUE_WORDS
        return parse
    return type(default)


@dataclasses.dataclass
class TrainingRun:
    """What a training script needs from its command line."""

    options: Any  # the script's Options, smoke overrides applied
    config: Any  # the network config built from flags, or None when the script has none
    args: argparse.Namespace  # everything parsed, for script-specific flags
    run_dir: Path  # resume state
    checkpoint_dir: Path | None  # None: models/checkpoints
    command: str  # how to reproduce this run, for the manifest
    fresh: bool  # ignore a saved resume state


def _add_fields(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = ()) -> list[str]:
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=option_type(f.default), default=f.default)
        names.append(f.name)
    return names


def parse_training_args(
    argv: list[str] | None,
    *,
    module: str,
    description: str | None,
    options: type,
    name: str,
    smoke: Mapping[str, Any],
    config: type | None = None,
    config_skip: Iterable[str] = ("kind", "image_size"),
    threads: int = 1,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> TrainingRun:
    """Parse `argv` (None: the process's own arguments) for the script `module` training `name`.

    `smoke` holds the Options overrides of `--smoke`; `config` is the network's config dataclass,
    whose fields (less `config_skip`) become flags too; `extra` adds script-specific flags.
    """
    if argv is None:  # a real command line, not a test calling main([...]) in-process
        passive_openmp_or_reexec()
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    option_names = _add_fields(parser, options)
    config_names = _add_fields(parser, config, config_skip) if config is not None else []
    parser.add_argument("--fresh", action="store_true", help="ignore a saved resume state and start afresh")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps, written to --checkpoint-dir or else a temporary directory")
    parser.add_argument("--run-dir", type=Path, default=None, help=f"resume state (default: run/{name})")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="default: models/checkpoints")
    parser.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)

    parsed_options = options(**{n: getattr(args, n) for n in option_names})
    parsed_config = config(**{n: getattr(args, n) for n in config_names}) if config is not None else None
    run_dir, checkpoint_dir = args.run_dir or RUN_DIR / name, args.checkpoint_dir
    if args.smoke:
        parsed_options = dataclasses.replace(parsed_options, **smoke)
        checkpoint_dir = checkpoint_dir or Path(tempfile.mkdtemp(prefix=f"{name}-smoke-"))
        run_dir = args.run_dir or checkpoint_dir / "run"
    command = command_line() if argv is None else " ".join([f"python -m {module}", *argv])
    return TrainingRun(options=parsed_options, config=parsed_config, args=args, run_dir=run_dir,
                       checkpoint_dir=checkpoint_dir, command=command, fresh=args.fresh)
