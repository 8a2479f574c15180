"""compose.postgres.yaml: the optional PostgreSQL + pgvector service (profile `postgres`) and the
embedding service pointed at it, resolved by Compose v2 without an engine."""

from __future__ import annotations

import json
import os
import subprocess

from tests.stack.test_compose import COMPOSE, ROOT


def resolved(*args: str, env: dict | None = None) -> dict:
    result = subprocess.run([str(COMPOSE), "-f", "compose.yaml", "-f", "compose.postgres.yaml", *args, "config",
                             "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_postgres_profile_adds_a_database_the_embedding_service_uses():
    config = resolved("--profile", "postgres")
    postgres = config["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"] and "pgvector" in postgres["image"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert [v["source"] for v in postgres["volumes"]] == ["postgres-data"]
    embedding = config["services"]["embedding"]
    assert embedding["environment"]["SYN_EMBEDDING_STORE"] == "postgresql://syn:syn@postgres:5432/syn"
    assert embedding["deploy"]["replicas"] == 2
    # Everything else of the embedding service is compose.yaml's.
    assert embedding["environment"]["SYN_METRICS_PORT"] == "9104"


def test_without_the_profile_an_external_database_comes_from_the_environment():
    url = "postgresql://app:secret@db.internal:5432/vectors"
    config = resolved(env={"SYN_EMBEDDING_STORE": url})
    assert "postgres" not in config["services"]
    assert config["services"]["embedding"]["environment"]["SYN_EMBEDDING_STORE"] == url
