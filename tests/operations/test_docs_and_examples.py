"""The generated configuration reference is current, and the walkthrough runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from capture_server.config import Settings
from tests.conftest import ROOT


def test_config_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_config_reference.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "docs" / "operations.md").read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"`CAPTURE_SERVER_{name.upper()}`" in text


def test_walkthrough_runs_end_to_end(tmp_path: Path) -> None:
    # Loopback only: free 127.0.0.1 ports, and the tests' loopback DNS zone (inherited env).
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("CAPTURE_SERVER_DATABASE_URL", None)
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "walkthrough.sh")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    for name in ("bcc.eml", "forward_inline.eml", "forward_attachment.eml", "reply.eml"):
        assert f"{name}" in output
    assert output.count("-> 250 2.0.0 queued as eng_") == 4, output
    assert "paula@umbrella.test" in output  # the forwarded original's sender became a contact
    assert "the daemon stopped cleanly" in output
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed
