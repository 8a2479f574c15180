"""Typed settings: parsed and checked once, every error naming the SYN_* variable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.audio.settings import AudioSettings
from services.captioning.settings import CaptioningSettings
from services.embedding.settings import EmbeddingSettings
from services.gateway.settings import GatewaySettings, UpstreamTargets
from services.generation.settings import GenerationSettings
from services.runtime.settings import Settings, SettingsError, read_settings


@dataclass(frozen=True)
class Example:
    count: int = field(default=3, metadata={"min": 1})
    ratio: float = 0.5
    on: bool = False
    names: tuple[str, ...] = ("a",)
    folder: Path = Path("x")
    mode: str = field(default="fast", metadata={"choices": ("fast", "slow")})


def test_types_defaults_and_overrides():
    env = {"SYN_EX_COUNT": " 7 ", "SYN_EX_RATIO": "0.25", "SYN_EX_ON": "Yes", "SYN_EX_NAMES": "b, c,,d",
           "SYN_EX_FOLDER": "/tmp/y", "SYN_EX_MODE": ""}
    value = read_settings(Example, "SYN_EX_", environ=env)
    assert value == Example(7, 0.25, True, ("b", "c", "d"), Path("/tmp/y"), "fast")  # empty = default
    assert read_settings(Example, "SYN_EX_", {"count": 9, "mode": None}, environ=env).count == 9


@pytest.mark.parametrize("variable, raw, says", [
    ("SYN_EX_COUNT", "three", "not a valid int"),
    ("SYN_EX_COUNT", "0", "at least 1"),
    ("SYN_EX_RATIO", "half", "not a valid float"),
    ("SYN_EX_ON", "maybe", "true or false"),
    ("SYN_EX_MODE", "medium", "one of: fast, slow"),
])
def test_each_bad_value_names_its_variable(variable, raw, says):
    with pytest.raises(SettingsError) as err:
        read_settings(Example, "SYN_EX_", environ={variable: raw})
    assert variable in str(err.value) and says in str(err.value)


def test_shared_settings_check_tls_halves_files_and_levels(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    with pytest.raises(SettingsError, match="SYN_TLS_CERT_FILE is set but SYN_TLS_KEY_FILE is not"):
        read_settings(Settings, environ={"SYN_TLS_CERT_FILE": str(cert)})
    with pytest.raises(SettingsError, match="SYN_TLS_KEY_FILE=.*no such file"):
        read_settings(Settings, environ={"SYN_TLS_CERT_FILE": str(cert), "SYN_TLS_KEY_FILE": str(tmp_path / "n")})
    with pytest.raises(SettingsError, match="SYN_TLS_CLIENT_CA_FILE"):
        read_settings(Settings, environ={"SYN_TLS_CLIENT_CA_FILE": str(cert)})
    with pytest.raises(SettingsError, match="SYN_LOG_LEVEL"):
        read_settings(Settings, environ={"SYN_LOG_LEVEL": "chatty"})
    assert read_settings(Settings, environ={"SYN_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    assert read_settings(Settings, environ={"SYN_AUTH_TOKEN_FILE": str(token)}).auth_token == "from-a-file"


@pytest.mark.parametrize("cls, variable, raw", [
    (CaptioningSettings, "SYN_CAPTIONING_LENGTH_PENALTY", "long"),
    (AudioSettings, "SYN_AUDIO_MAX_SECONDS", "0"),
    (AudioSettings, "SYN_AUDIO_MAX_STFT_CELLS", "lots"),
    (EmbeddingSettings, "SYN_EMBEDDING_INDEX_KIND", "ivf"),
    (EmbeddingSettings, "SYN_EMBEDDING_HNSW_M", "1"),
    (EmbeddingSettings, "SYN_EMBEDDING_STORE_TIMEOUT_S", "soon"),
    (GenerationSettings, "SYN_GENERATION_CHUNK", "0"),
    (GatewaySettings, "SYN_GATEWAY_HEALTH_INTERVAL_S", "often"),
])
def test_each_service_reads_its_own_typed_settings(monkeypatch, cls, variable, raw):
    assert cls.from_env() == cls()  # defaults with nothing set
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SettingsError, match=variable):
        cls.from_env()


def test_service_settings_parse_lists_and_targets(monkeypatch):
    monkeypatch.setenv("SYN_CAPTIONING_MODELS", "captioning, captioning-small")
    monkeypatch.setenv("SYN_EMBEDDING_TARGET", "dns:///embedding:50054")
    assert CaptioningSettings.from_env().models == ("captioning", "captioning-small")
    targets = UpstreamTargets.from_env()
    assert targets.target("embedding") == "dns:///embedding:50054"
    assert targets.target("audio") == "127.0.0.1:50053"


def test_a_service_with_a_bad_setting_of_its_own_stops_naming_it():
    import os
    import subprocess
    import sys

    from tests.servers import REPO_ROOT, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYN_")} | {
        "SYN_HOST": "127.0.0.1", "SYN_GATEWAY_HEALTH_INTERVAL_S": "often"}
    result = subprocess.run([sys.executable, "-m", "services.gateway", "--port", str(free_port())], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SYN_GATEWAY_HEALTH_INTERVAL_S='often' is not a valid float" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
