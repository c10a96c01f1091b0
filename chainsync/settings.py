"""One typed settings object for every process, read from the environment and `.env`.

The specification's own names (``WS_ENABLED`` … ``LOG_LEVEL``) are kept as they are; every other
variable carries the ``CHAINSYNC_`` prefix. Reach the settings through :func:`get_settings`, never
by building them at import time, so tests can point a process at its own data directory.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _spec(name: str) -> AliasChoices:
    """Accept the specification's unprefixed name (and the prefixed one, for symmetry)."""
    return AliasChoices(name, f"CHAINSYNC_{name}")


class SettingsError(RuntimeError):
    """Raised when the configuration cannot run safely (e.g. a missing secret outside demo mode)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHAINSYNC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- mode -------------------------------------------------------------------------------
    environment: Literal["development", "production"] = "development"
    demo_mode: bool = False
    demo_password: SecretStr = SecretStr("demo")

    # --- storage ----------------------------------------------------------------------------
    data_dir: Path = Path("data")
    ops_store_url: str | None = None  # default: sqlite:///<data_dir>/ops.sqlite
    warehouse_path: Path | None = None  # default: <data_dir>/warehouse.duckdb
    serving_dir: Path | None = None  # default: <data_dir>/serving
    serving_keep_versions: int = Field(5, ge=1)
    dbt_project_dir: Path = Path(__file__).resolve().parent.parent / "dbt_project"
    # Shared state across API processes (rate limits, WebSocket fan-out and replay, cache invalidation,
    # revocation and block push). Unset: in-process, for one API process.
    redis_url: str | None = None
    # Every Redis key and channel name starts with this, so deployments (and test sessions) sharing one
    # Redis server never see each other's state.
    redis_key_prefix: str = Field("chainsync:", min_length=1, max_length=64)
    # DuckDB resources for the pipeline's warehouse connection ("" leaves DuckDB's default).
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int = Field(0, ge=0, le=1024)  # 0: DuckDB's default (one per core)
    # A Dask scheduler (tcp://host:8786) for forecasting and anomaly scoring; unset: in-process.
    dask_scheduler: str | None = None

    # --- API --------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_minutes: int = Field(15, ge=1, le=24 * 60)
    ingest_batch_limit: int = Field(1000, ge=1, le=100_000)
    # Plausible events (api.plausibility): occurred_at no older than the offline window terminals are
    # allowed, and no further ahead than a small clock skew.
    event_max_age_days: int = Field(30, ge=1, le=3650)
    event_clock_skew_seconds: int = Field(900, ge=0, le=86_400)
    event_max_line_quantity: int = Field(1_000, ge=1, le=100_000)  # units on one sale line
    event_max_unit_price_cents: int = Field(10_000_000, ge=1, le=100_000_000)  # 100,000.00 a unit
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # Connection timeouts (api.server), as a reverse proxy would set them: request headers complete within
    # this many seconds of the first byte; at most this long between two reads of a body; idle keep-alive.
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(15.0, gt=0, le=600)
    http_keepalive_timeout_seconds: int = Field(5, ge=1, le=600)

    # --- live notifications and observability ----------------------------------------------
    ws_max_connections_per_user: int = Field(10, ge=1)
    ws_queue_size: int = Field(256, ge=1, le=100_000)  # messages buffered per connection before a drop
    ws_replay_buffer: int = Field(1000, ge=0, le=1_000_000)  # messages kept per channel for resume
    ws_auth_timeout_seconds: float = Field(5.0, gt=0)
    ws_ip_allowlist: str = ""  # comma-separated CIDRs; empty admits every address not denied
    ws_ip_denylist: str = ""  # comma-separated CIDRs
    ws_metrics_interval_seconds: float = Field(5.0, gt=0)
    notify_poll_seconds: float = Field(1.0, gt=0)  # how often the API looks for new snapshots and events
    snapshot_stale_seconds: int = Field(36 * 3600, ge=60)
    disk_free_warn_mb: int = Field(1024, ge=0)
    disk_free_critical_mb: int = Field(100, ge=0)
    performance_window_seconds: int = Field(900, ge=10, le=24 * 3600)
    request_log_enabled: bool = True  # per-minute request stats into the ops store (performance anomalies)
    request_log_flush_seconds: float = Field(15.0, gt=0, le=3600)

    @field_validator("ws_ip_allowlist", "ws_ip_denylist")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad entry
        return v

    # --- dashboards (each analyst logs in with their own API user; no shared credentials) ------
    dashboard_api_url: str | None = None  # default: http://<api_host>:<api_port>
    dashboard_api_timeout_seconds: float = Field(2.0, gt=0, le=60)
    # Live figures redraw themselves every N seconds (0: only when the page reruns).
    dashboard_refresh_seconds: int = Field(0, ge=0, le=3600)

    # --- security (authentication, controls, risk scoring) -----------------------------------
    refresh_token_days: int = Field(14, ge=1, le=365)
    # A token revoked by logout in another API process is refused within this many seconds (0: at once,
    # at the cost of a query per authenticated request); the logout's own process refuses it at once.
    revocation_cache_seconds: float = Field(2.0, ge=0, le=60)
    totp_issuer: str = "ChainSync"
    # Fernet keys (comma-separated; the first encrypts, all decrypt) for TOTP secrets at rest. Unset: a key
    # derived from the JWT secret (HKDF-SHA256), so changing that secret then voids every enrolment.
    totp_encryption_key: SecretStr | None = None
    # Networks of trusted reverse proxies (comma-separated CIDRs). X-Forwarded-For is read only when the
    # peer is one of them, so a spoofed header from anyone else changes nothing.
    trusted_proxies: str = ""
    ip_allowlist: str = ""  # store and office networks: scored and logged, never blocked automatically
    ip_allowlist_only: bool = False  # true: addresses outside the allowlist are refused (403)
    ip_denylist: str = ""  # always refused (403)
    rate_limit_enabled: bool = True
    # ``limits`` notation ("100/minute", "10 per second"); several separated by ";".
    rate_limit_ip: str = "1200/minute"
    rate_limit_user: str = "600/minute"
    rate_limit_device: str = "1200/minute"
    rate_limit_login: str = "20/minute"  # login attempts per address
    # Failed password or two-factor attempts per username, whatever the address (spread guessing).
    rate_limit_login_user: str = "10/15minutes"
    # A ``limits`` storage URL. Unset: the Redis of ``redis_url`` when that is set (counts shared by every
    # API process), else memory:// (per process).
    rate_limit_storage_url: str | None = None
    security_dry_run: bool = False  # decide and log blocks, enforce none
    # JSON and form bodies up to this size have their string values scanned for attack patterns (0: off).
    input_scan_max_bytes: int = Field(1024 * 1024, ge=0)
    # Validation failures (422) that also go to the event inbox, per minute and API process: an address's
    # from its burst-th on, at most per_address_minute of them, and per_minute in all (every one is audited
    # and scored; the rest are held back, so a flood cannot fill the inbox).
    validation_inbox_burst: int = Field(5, ge=1)
    validation_inbox_per_address_minute: int = Field(10, ge=0)
    validation_inbox_per_minute: int = Field(300, ge=0)
    # The risk model's settings (chainsync/risk.py's RiskModel, with credential_stuffing_users below): the
    # API scores with them and the dbt asset hands them to fct_ip_risk as vars, so both move together.
    risk_block_score: float = Field(10.0, gt=0)  # an address at or above this score is blocked
    risk_half_life_minutes: float = Field(30.0, gt=0)  # scores halve every this many minutes
    # A block (or an admin unblock) made by another API process takes effect here within this many seconds
    # (each process re-reads the ops store's blocks and changed reputations at most this often; 0: on
    # every request, at the cost of a query each).
    risk_sync_seconds: float = Field(2.0, ge=0, le=60)
    ban_initial_seconds: int = Field(3600, ge=1)  # first block: 1 h
    ban_multiplier: float = Field(24.0, ge=1)  # each repeat multiplies it: 1 h -> 1 d -> ...
    ban_max_seconds: int = Field(7 * 86400, ge=1)  # the cap
    # ``ip_reputation`` rows that once held a block are kept this many days after their last write and
    # the block's end, so a returning address's next block still escalates (keep it at least 4 x
    # ban_max_seconds, the quiet spell after which escalation starts over anyway); rows with no block
    # go as soon as their score has decayed below 1 % of risk_block_score.
    risk_reputation_retention_days: float = Field(30.0, gt=0)
    credential_stuffing_users: int = Field(5, ge=2)  # distinct usernames from one address in 15 min
    business_hours: str = "06-22"  # local hours "HH-HH"; access outside them scores
    business_timezone: str = "UTC"

    @field_validator("trusted_proxies", "ip_allowlist", "ip_denylist")
    @classmethod
    def _security_cidrs(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        return v

    @field_validator("totp_encryption_key")
    @classmethod
    def _fernet_keys(cls, v: SecretStr | None) -> SecretStr | None:
        for key in (v.get_secret_value() if v else "").split(","):
            if key.strip():
                try:
                    ok = len(base64.urlsafe_b64decode(key.strip().encode("ascii"))) == 32
                except (ValueError, UnicodeEncodeError):
                    ok = False
                if not ok:
                    raise ValueError(
                        "each key must be a Fernet key: 32 bytes, url-safe base64 (44 characters)"
                    )
        return v

    @field_validator("business_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        start, _, end = v.partition("-")
        if not (start.isdigit() and end.isdigit() and 0 <= int(start) <= 24 and 0 <= int(end) <= 24):
            raise ValueError("business_hours must look like 06-22")
        return v

    # --- pipeline ---------------------------------------------------------------------------
    forecast_horizon_days: int = Field(90, ge=7, le=365)
    # Holiday calendar of the forecast (a `holidays` library country code); empty turns holiday effects off.
    forecast_holiday_country: str = "US"
    # How the forecast hierarchy is made coherent: MinTrace "wls_struct" / "ols" reconciles the series and
    # the store / category / chain totals; "bottom_up" keeps the series and sums them.
    forecast_reconciliation: Literal["bottom_up", "ols", "wls_struct"] = "wls_struct"
    # The global LightGBM model as a forecast candidate: "auto" (weekly and coarser panels of 20+ series),
    # "on" (every panel, daily too: slower), "off".
    forecast_global_model: Literal["auto", "on", "off"] = "auto"
    # Local worker processes of the daily forecast run when no Dask scheduler is set (the series partitions
    # spread over them, the same rows as one process): 0 = one per core, 1 = this process only.
    forecast_processes: int = Field(0, ge=0, le=256)
    anomaly_threshold_quantile: float = Field(0.99, gt=0.5, lt=1.0)
    # Anomaly decisions, applied to stored raw scores (changing them re-flags without refitting).
    anomaly_z_threshold: float = Field(6.0, gt=0)  # scaled MADs a driving feature must reach
    anomaly_driver_z: float = Field(3.0, gt=0)  # |z| from which a sales feature is listed as a driver
    anomaly_residual_threshold: float = Field(3.5, gt=0)  # robust z of chainsync.anomalies (retrospective)
    anomaly_residual_min_z: float = Field(0.0, ge=0)  # ... with a sales feature this many MADs out (0: alone)
    anomaly_min_cashier_events: int = Field(5, ge=0)  # refunds + voids a flagged cashier shift holds
    anomaly_min_security_failures: int = Field(10, ge=0)  # failures a flagged IP-day holds
    anomaly_min_missing_units: int = Field(5, ge=0)  # units missing at a flagged shelf count
    anomaly_min_missing_share: float = Field(0.1, ge=0, le=1)  # ... and this share of the expected level
    anomaly_min_api_requests: int = Field(20, ge=1)  # requests an API endpoint-hour needs to be scored
    anomaly_min_api_errors: int = Field(5, ge=0)  # 5xx responses a flagged error-rate hour holds

    # --- the specification's variables (names kept verbatim) --------------------------------
    ws_enabled: bool = Field(True, validation_alias=_spec("WS_ENABLED"))
    ws_path: str = Field("/ws/notifications", validation_alias=_spec("WS_PATH"))
    # Milliseconds between heartbeat pings; a connection silent for two intervals is closed.
    ws_heartbeat_interval: int = Field(30_000, ge=10, validation_alias=_spec("WS_HEARTBEAT_INTERVAL"))
    ws_max_connections: int = Field(1000, ge=1, validation_alias=_spec("WS_MAX_CONNECTIONS"))
    ai_analytics_enabled: bool = Field(True, validation_alias=_spec("AI_ANALYTICS_ENABLED"))
    # Seconds; the specification's default is one hour (a new snapshot invalidates the cache anyway).
    ai_model_cache_ttl: int = Field(3600, ge=0, validation_alias=_spec("AI_MODEL_CACHE_TTL"))
    offline_sync_enabled: bool = Field(True, validation_alias=_spec("OFFLINE_SYNC_ENABLED"))
    # Read in milliseconds, as the specification writes it (30000 = 30 s), held here in whole seconds.
    # A value under 1000 can only have been meant as seconds (no terminal polls more than once a second),
    # so it is taken as seconds, which keeps older configurations (300) working.
    offline_sync_interval: int = Field(300, ge=1, validation_alias=_spec("OFFLINE_SYNC_INTERVAL"))
    security_audit_enabled: bool = Field(True, validation_alias=_spec("SECURITY_AUDIT_ENABLED"))
    monitoring_alert_webhook: str | None = Field(None, validation_alias=_spec("MONITORING_ALERT_WEBHOOK"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_spec("LOG_LEVEL")
    )

    @field_validator("offline_sync_interval", mode="before")
    @classmethod
    def _sync_interval_ms(cls, v: object) -> object:
        try:
            value = int(str(v).strip())
        except ValueError:
            return v  # the int field's own error names the variable
        return -(-value // 1000) if value >= 1000 else value  # ms, rounded up to whole seconds

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    # --- derived paths ----------------------------------------------------------------------
    @property
    def ops_store(self) -> str:
        return self.ops_store_url or f"sqlite:///{(self.data_dir / 'ops.sqlite').resolve()}"

    @property
    def warehouse(self) -> Path:
        return (self.warehouse_path or self.data_dir / "warehouse.duckdb").resolve()

    @property
    def ws_ip_allow(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.ws_ip_allowlist.split(",")
            if p.strip()
        ]

    @property
    def ws_ip_deny(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False) for p in self.ws_ip_denylist.split(",") if p.strip()
        ]

    @property
    def serving(self) -> Path:
        return (self.serving_dir or self.data_dir / "serving").resolve()

    def jwt_key(self) -> str:
        """The JWT signing secret. Outside demo mode it must be configured; in demo mode a random one
        is generated once and kept in the data directory (mode 0600) so restarts keep tokens valid."""
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value():
            value = self.jwt_secret.get_secret_value()
            if len(value) < 32:
                raise SettingsError("CHAINSYNC_JWT_SECRET must be at least 32 characters")
            return value
        if not self.demo_mode:
            raise SettingsError(
                "CHAINSYNC_JWT_SECRET is not set. Set it (32+ random characters) or run in demo mode "
                "(CHAINSYNC_DEMO_MODE=true)."
            )
        path = self.data_dir / ".demo_jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
