"""One frozen Settings object: defaults < TOML file < CAPTURE_SERVER_* environment < CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
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
    smtp_timeout_seconds: float = Field(300.0, gt=0, description="Idle time per command")
    drain_seconds: float = Field(30.0, ge=0, description="Grace on SIGTERM for mail in flight")
    quarantine_dir: Path = Field(
        Path("quarantine"), description="Messages that crashed the pipeline, kept whole"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("smtp_listen", "lmtp_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

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
            raise ConfigError(f"config file {config_file} does not exist")
        try:
            with config_file.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {config_file} is not valid TOML: {error}") from error
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
