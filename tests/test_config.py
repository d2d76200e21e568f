"""Settings: the commented example documents every setting, and bad values explain themselves."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from capture_server.config import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "capture-server.toml"


def test_example_config_documents_every_setting() -> None:
    written = tomllib.loads(EXAMPLE.read_text())
    documented = set(written) | {
        line.lstrip("# ").split(" ", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("# ") and " = " in line
    }
    assert set(Settings.model_fields) <= documented
    settings = load_settings(EXAMPLE)
    assert settings.smtp_listen == "127.0.0.1:2525"


def test_precedence_file_then_environment_then_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('capture_domain = "from-file.test"\nmax_recipients = 7\n')
    assert load_settings(config).capture_domain == "from-file.test"
    monkeypatch.setenv("CAPTURE_SERVER_CAPTURE_DOMAIN", "from-env.test")
    assert load_settings(config).capture_domain == "from-env.test"
    assert load_settings(config, capture_domain="from-cli.test").capture_domain == "from-cli.test"
    assert load_settings(config).max_recipients == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"smtp_listen": "2525"}, "HOST:PORT"),
        ({"max_message_bytes": 0}, "max_message_bytes"),
        ({"require_tls": True}, "tls_cert_file"),
        ({"proxy_protocol_from": ("not-an-ip",)}, "proxy_protocol_from"),
        ({"capture_domain": "@bad"}, "capture_domain"),
    ],
)
def test_bad_settings_are_explained(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("max_recipients = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="is not a file"):
        load_settings(tmp_path)


def test_an_unreadable_config_file_is_one_clear_line(tmp_path: Path) -> None:
    """A file that cannot be read (no permission for the service user; here a file whose
    reading fails) is a one-line error and exit 2, never a traceback."""
    unreadable = "/proc/self/mem"  # a regular file to stat, EIO to read at offset 0
    if not Path(unreadable).is_file():
        pytest.skip("needs Linux /proc")
    result = subprocess.run(
        [sys.executable, "-m", "capture_server", "--config", unreadable, "contacts", "list",
         "acme"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot read config file {unreadable}" in result.stderr
