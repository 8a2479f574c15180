"""compose.postgres.yaml: the optional PostgreSQL + pgvector service (profile `postgres`) and the
embedding service pointed at it, validated by Debian's docker-compose without an engine."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.stack.test_compose import ROOT, _docker_compose


def resolved(*args: str, env: dict | None = None) -> dict:
    result = subprocess.run([_docker_compose(), "-f", "compose.yaml", "-f", "compose.postgres.yaml", *args,
                             "config"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_postgres_profile_adds_a_database_the_embedding_service_uses():
    config = resolved("--profile", "postgres")
    postgres = config["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"] and "pgvector" in postgres["image"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert any(str(v).startswith("postgres-data:") or (isinstance(v, dict) and v.get("source") == "postgres-data")
               for v in postgres["volumes"])
    embedding = config["services"]["embedding"]
    assert embedding["environment"]["SYN_EMBEDDING_STORE"] == "postgresql://syn:syn@postgres:5432/syn"
    assert embedding["deploy"]["replicas"] == 2
    # Everything else of the embedding service is compose.yaml's.
    assert embedding["environment"]["SYN_METRICS_PORT"] == "9104"


def test_an_external_database_comes_from_the_environment():
    url = "postgresql://app:secret@db.internal:5432/vectors"
    config = resolved(env={"SYN_EMBEDDING_STORE": url})
    assert config["services"]["embedding"]["environment"]["SYN_EMBEDDING_STORE"] == url
