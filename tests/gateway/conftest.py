"""A gateway in front of real upstream services, shared by the gateway tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPSTREAMS = ("captioning", "generation", "audio", "embedding")


def require_upstreams() -> None:
    missing = [n for n in UPSTREAMS if not (ROOT / "services" / n / "servicer.py").exists()]
    if missing:
        pytest.skip(f"upstream services not in this checkout yet: {', '.join(missing)}")


@pytest.fixture(scope="session")
def upstream_targets(shared_service, tmp_path_factory):
    require_upstreams()
    index_dir = tmp_path_factory.mktemp("gateway-index")
    env = {"embedding": {"SYN_EMBEDDING_INDEX_DIR": str(index_dir)}}
    return {name: shared_service(name, env.get(name)).target for name in UPSTREAMS}


def gateway_env(targets: dict[str, str]) -> dict[str, str]:
    return {f"SYN_{name.upper()}_TARGET": target for name, target in targets.items()} | {
        "SYN_GATEWAY_HEALTH_INTERVAL_S": "0.5"}


@pytest.fixture(scope="session")
def gateway(shared_service, upstream_targets):
    return shared_service("gateway", gateway_env(upstream_targets))
