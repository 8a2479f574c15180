"""Generate the Python stubs (messages, .pyi types, gRPC stubs) from protos/ into clients/.

`--write` regenerates in place; `--check` exits 1 when the committed code differs
from a fresh generation (the test suite runs the same comparison).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc
import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "clients"
GENERATED = OUT_ROOT / "synesthesia" / "v1"


def generate(out_dir: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / "synesthesia" / "v1" / "__init__.py").write_text(
        '"""Generated from protos/synesthesia/v1 by `make protos`. Do not edit."""\n'
    )


def differences(fresh: Path, committed: Path) -> list[str]:
    names = {p.name for p in fresh.iterdir()} | (
        {p.name for p in committed.iterdir() if p.suffix in {".py", ".pyi"}} if committed.exists() else set()
    )
    out = []
    for name in sorted(names):
        a, b = fresh / name, committed / name
        if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
            out.append(name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate clients/synesthesia/v1")
    mode.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    mode.add_argument("--check-or-write", action="store_true", help="regenerate only when stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "synesthesia" / "v1"
        stale = differences(fresh, GENERATED)
        if args.check:
            if stale:
                print("stale generated files (run `make protos`):", ", ".join(stale), file=sys.stderr)
                return 1
            return 0
        if stale:
            shutil.rmtree(GENERATED, ignore_errors=True)
            shutil.copytree(fresh, GENERATED)
            print("regenerated:", ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
