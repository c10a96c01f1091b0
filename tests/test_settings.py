"""Settings: the specification's names, secrets without defaults, .env.example complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainsync.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
SPEC_NAMES = [
    "WS_ENABLED",
    "WS_PATH",
    "WS_HEARTBEAT_INTERVAL",
    "WS_MAX_CONNECTIONS",
    "AI_ANALYTICS_ENABLED",
    "AI_MODEL_CACHE_TTL",
    "OFFLINE_SYNC_ENABLED",
    "OFFLINE_SYNC_INTERVAL",
    "SECURITY_AUDIT_ENABLED",
    "MONITORING_ALERT_WEBHOOK",
    "LOG_LEVEL",
]


def _env_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_env_example_lists_every_setting() -> None:
    listed = _env_names()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = set(alias.choices) if alias is not None else {f"CHAINSYNC_{name.upper()}"}  # type: ignore[union-attr]
        assert names & listed, f"{name} is missing from .env.example"
    assert set(SPEC_NAMES) <= listed


def test_spec_names_are_read_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_ENABLED", "false")
    monkeypatch.setenv("AI_MODEL_CACHE_TTL", "42")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("MONITORING_ALERT_WEBHOOK", "http://127.0.0.1:9/hook")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.ws_enabled is False
    assert s.ai_model_cache_ttl == 42
    assert s.log_level == "DEBUG"
    assert s.monitoring_alert_webhook == "http://127.0.0.1:9/hook"


def test_no_jwt_secret_outside_demo_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINSYNC_JWT_SECRET", raising=False)
    s = Settings(_env_file=None, data_dir=tmp_path, demo_mode=False)  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="CHAINSYNC_JWT_SECRET"):
        s.jwt_key()


def test_short_jwt_secret_is_refused(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path, jwt_secret="short")  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="32"):
        s.jwt_key()


def test_demo_mode_generates_a_private_stable_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINSYNC_JWT_SECRET", raising=False)
    s = Settings(_env_file=None, data_dir=tmp_path, demo_mode=True)  # type: ignore[call-arg]
    first = s.jwt_key()
    assert len(first) >= 32 and first == s.jwt_key()
    assert (tmp_path / ".demo_jwt_secret").stat().st_mode & 0o077 == 0


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_MAX_CONNECTIONS", "0")
    with pytest.raises(ValueError, match="ws_max_connections|WS_MAX_CONNECTIONS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_offline_sync_interval_is_milliseconds_as_the_specification_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFLINE_SYNC_INTERVAL", "30000")
    assert Settings(_env_file=None).offline_sync_interval == 30  # type: ignore[call-arg]
    monkeypatch.setenv("OFFLINE_SYNC_INTERVAL", "1500")
    assert Settings(_env_file=None).offline_sync_interval == 2  # type: ignore[call-arg]
    # An older configuration in seconds keeps its meaning.
    monkeypatch.setenv("OFFLINE_SYNC_INTERVAL", "300")
    assert Settings(_env_file=None).offline_sync_interval == 300  # type: ignore[call-arg]
    monkeypatch.setenv("OFFLINE_SYNC_INTERVAL", "soon")
    with pytest.raises(ValueError, match="offline_sync_interval|OFFLINE_SYNC_INTERVAL"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_ai_model_cache_ttl_defaults_to_one_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AI_MODEL_CACHE_TTL", raising=False)
    monkeypatch.delenv("CHAINSYNC_AI_MODEL_CACHE_TTL", raising=False)
    assert Settings(_env_file=None).ai_model_cache_ttl == 3600  # type: ignore[call-arg]
