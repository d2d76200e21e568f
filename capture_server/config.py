"""One frozen Settings object: defaults < TOML file < CAPTURE_SERVER_* environment < CLI."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting a user wrote is wrong; the message says which and why."""


class Settings(BaseSettings):
    """Every setting of the daemon and the CLI. Frozen: reloading builds a new one."""

    model_config = SettingsConfigDict(
        env_prefix="CAPTURE_SERVER_", frozen=True, extra="forbid", validate_default=True
    )

    database_url: str = Field(
        "sqlite:///capture-server.db",
        description="SQLAlchemy URL: sqlite:///FILE (default, WAL) or postgresql+psycopg://...",
    )
    # store/db.py LOCK_TIMEOUT_SECONDS: past it a capture answers 451 and its client retries.
    database_lock_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Wait for a lock another transaction holds (SQLite busy timeout, "
        "PostgreSQL lock_timeout), then 451",
    )
    smtp_listen: str = Field("127.0.0.1:2525", description="SMTP listener HOST:PORT; empty: off")
    lmtp_listen: str = Field("127.0.0.1:2424", description="LMTP listener HOST:PORT; empty: off")
    hostname: str = Field("capture.localhost", description="Name in the SMTP greeting")
    capture_domain: str = Field(
        "capture.localhost", description="Domain of every capture address; other domains: 550"
    )
    server_secret: str = Field(
        "",
        description="Secret the capture-address tokens derive from; empty: one is generated "
        "and kept in the database",
    )
    max_message_bytes: int = Field(100 * MIB, gt=0, description="Whole message; above: 552 5.3.4")
    max_body_bytes: int = Field(2 * MIB, gt=0, description="Body text above this is not logged")
    max_attachment_bytes: int = Field(
        50 * MIB, gt=0, description="An attachment above this is dropped, the rest is logged"
    )
    max_recipients: int = Field(1000, gt=0, description="Recipients per transaction (452 4.5.3)")
    # smtp/budget.py: peak memory is about this times 1.2, however many big messages arrive.
    message_memory_bytes: int = Field(
        256 * MIB, gt=0,
        description="Bytes of big messages (over 1 MiB) processed at once; more wait on disk",
    )  # fmt: skip
    # store/writer.py: concurrent sessions' messages share one transaction and one fsync.
    # "auto": on for SQLite (one writer anyway: p99 fell 4x in bench/), off for PostgreSQL
    # (its sessions write in parallel; batching them measured no gain).
    group_commit: Literal["auto", "on", "off"] = Field(
        "auto", description="Commit concurrent messages together: auto (SQLite only), on, off"
    )
    smtp_timeout_seconds: float = Field(300.0, gt=0, description="Idle time per command")
    drain_seconds: float = Field(30.0, ge=0, description="Grace on SIGTERM for mail in flight")
    # workers.py: N > 1 makes `serve` a supervisor of N daemon processes on the same listeners.
    workers: int = Field(
        1, ge=0, le=256, description="Daemon processes on the same listeners; 0 or auto: one a CPU"
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop: auto (uvloop when installed), asyncio, uvloop"
    )
    # Limits against hostile or broken clients; Postfix's defaults are the reference.
    max_connections: int = Field(500, gt=0, description="Open sessions overall; more: 421 4.7.0")
    max_connections_per_ip: int = Field(
        50, gt=0, description="Open sessions per client address; more: 421 4.7.0"
    )
    hard_error_limit: int = Field(
        20, gt=0, description="Error replies in one session before 421 and disconnect"
    )
    junk_command_limit: int = Field(
        100, gt=0, description="NOOP/RSET/VRFY/HELP per session before 421 and disconnect"
    )
    max_line_length: int = Field(
        16384, ge=1001, description="Longest line accepted in DATA (RFC 5321 asks 1000)"
    )
    max_header_bytes: int = Field(
        102400, gt=0, description="Header section size; larger: 552 5.3.4"
    )
    max_mime_depth: int = Field(
        100, gt=0, description="Multipart containers in one message; more: not logged"
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate: enables STARTTLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    require_tls: bool = Field(False, description="Refuse MAIL before STARTTLS (530)")
    smtps_listen: str = Field("", description="Implicit-TLS SMTP listener HOST:PORT; empty: off")
    proxy_protocol_from: tuple[str, ...] = Field(
        (), description="Load balancers (IPs or CIDRs) whose PROXY v1/v2 header is honoured"
    )
    proxy_protocol_timeout: float = Field(10.0, gt=0, description="Wait for the PROXY header")
    quarantine_dir: Path = Field(
        Path("quarantine"), description="Messages that crashed the pipeline, kept whole"
    )
    archive_dir: str = Field(
        "", description="Raw archive of every accepted message (sha256.eml); empty: off"
    )
    archive_retention_days: int = Field(
        365,
        ge=0,
        description="Days archived messages are kept (the daemon purges every "
        "archive_purge_hours, or `archive purge`); 0: forever",
    )
    # archive_purge.py: the daemon's own retention job (worker 0); fractions for tests.
    archive_purge_hours: float = Field(
        24.0, ge=0,
        description="The daemon purges the archive past retention this often (hours, "
        "fractions allowed); 0: never, ops run `archive purge`",
    )  # fmt: skip
    # Sender authentication (SPF, DKIM, DMARC); each account's auth_mode says what it does.
    dns_nameservers: tuple[str, ...] = Field(
        (), description="Resolvers (IP addresses) for SPF/DKIM/DMARC; empty: the system's"
    )
    dns_port: int = Field(53, gt=0, le=65535, description="Port of dns_nameservers")
    # Small on purpose: an unreachable resolver costs each message this much (the look-ups
    # run in parallel), and in enforce a time-out is a 451 the sending MTA retries.
    dns_timeout: float = Field(
        1.0, gt=0, le=30, description="Seconds per DNS look-up; the whole check gets twice that"
    )
    # SPF and DMARC records of the same few sender domains, kept for their TTL up to this.
    dns_cache_seconds: float = Field(
        300, ge=0, le=86400, description="Longest a DNS answer is reused (its TTL if less); 0: off"
    )
    authserv_id: str = Field(
        "", description="Name in the Authentication-Results we record; empty: hostname"
    )
    trusted_relays: tuple[str, ...] = Field(
        (), description="Relays (IPs or CIDRs) whose Authentication-Results may be used"
    )
    trusted_authserv_ids: tuple[str, ...] = Field(
        (), description="authserv-ids of those relays' Authentication-Results headers"
    )
    metrics_listen: str = Field(
        "", description="HTTP HOST:PORT serving /metrics (Prometheus) and /healthz; empty: off"
    )
    api_listen: str = Field(
        "", description="HTTP HOST:PORT of the read API (/v1/..., bearer tokens); empty: off"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written"
    )
    # Notices: a short email to the rep when a message was not logged, or only partly.
    notice_relay_host: str = Field("", description="SMTP relay for notices; empty: no notices")
    notice_relay_port: int = Field(25, gt=0, le=65535, description="Port of notice_relay_host")
    notice_from: str = Field(
        "", description="From of notices; empty: capture-notices@<capture_domain>"
    )
    notice_max_per_hour: int = Field(10, ge=0, description="Notices per rep per hour, at most")
    notice_timeout_seconds: float = Field(30.0, gt=0, description="Talking to the relay")
    # Webhooks: the daemon sends the outbox; failed attempts back off exponentially.
    webhook_max_attempts: int = Field(8, gt=0, description="Attempts per delivery, then failed")
    webhook_backoff_seconds: float = Field(
        30.0, gt=0, description="Wait after the first failure; doubles each time (1 h at most)"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="One POST to a receiver")
    webhook_poll_seconds: float = Field(1.0, gt=0, description="How often the outbox is read")

    @field_validator("smtp_listen", "lmtp_listen", "smtps_listen", "metrics_listen", "api_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _parse_workers(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "auto":
                return 0
            if not text.isdigit():
                raise ValueError(
                    f"workers must be a number of processes (1: one) or auto, not {value!r}"
                )
        return value

    @property
    def worker_count(self) -> int:
        """workers, with 0 (auto) resolved to the number of CPUs."""
        return self.workers or os.cpu_count() or 1

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.require_tls or self.smtps_listen) and self.tls_cert_file is None:
            raise ValueError("require_tls and smtps_listen need tls_cert_file and tls_key_file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        for network in self.proxy_protocol_from:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as error:
                raise ValueError(f"proxy_protocol_from: {error}") from None
        return self

    @model_validator(mode="after")
    def _check_authentication(self) -> Settings:
        for name, values in (
            ("dns_nameservers", self.dns_nameservers),
            ("trusted_relays", self.trusted_relays),
        ):
            for value in values:
                try:
                    if name == "dns_nameservers":
                        ipaddress.ip_address(value)
                    else:
                        ipaddress.ip_network(value, strict=False)
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from None
        return self

    @property
    def effective_authserv_id(self) -> str:
        return (self.authserv_id or self.hostname).strip().lower()

    @field_validator("capture_domain")
    @classmethod
    def _lower_domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not value or "@" in value:
            raise ValueError("capture_domain must be a domain name such as capture.example.com")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI options > environment > TOML file > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' → (host, port), with a message a user understands."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:2525)")
    return host.strip("[]"), int(port)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional TOML file, the environment and explicit overrides."""
    if config_file is not None:
        if not config_file.is_file():
            state = "is not a file" if config_file.exists() else "does not exist"
            raise ConfigError(f"config file {config_file} {state}")
        try:
            with config_file.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {config_file} is not valid TOML: {error}") from error
        except OSError as error:  # e.g. no permission for the user the service runs as
            reason = error.strerror or str(error)
            raise ConfigError(f"cannot read config file {config_file}: {reason}") from error
    settings_class = _settings_reading(config_file)
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return settings_class(**clean)
    except ValueError as error:
        raise ConfigError(_explain(error)) from error


def _settings_reading(config_file: Path | None) -> type[Settings]:
    """Settings whose TOML source is this file (the file name lives in the class config)."""
    if config_file is None:
        return Settings
    config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})
    return type("FileSettings", (Settings,), {"model_config": config})


def _explain(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    parts = []
    for item in errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "settings"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid settings: " + "; ".join(parts)
