"""Webhooks end to end: SMTP in, outbox, the daemon's worker, a real receiver on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from capture_server.capture import CaptureService
from capture_server.config import load_settings
from capture_server.pipeline.message import Action, CapturedMessage, Envelope
from capture_server.smtp import replies
from capture_server.store.db import make_engine
from capture_server.store.repositories import Store
from capture_server.store.webhooks import verify
from tests.conftest import Cli, make_account, read_data, start_daemon
from tests.smtp.test_daemon import engagements, send
from tests.smtp.test_enrichment_smtp import lines, message


class Receiver:
    """Answers 500 to the first request of each idempotency key on /hook, then 200; /down
    answers 503 until `down_ok` is set."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, dict[str, str], bytes]] = []
        self.down_ok = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    key = headers.get("idempotency-key", "")
                    if self.path == "/hook":
                        seen = any(r[0] == "/hook" and r[2].get("idempotency-key") == key
                                   for r in receiver.requests)  # fmt: skip
                        status = 200 if seen else 500
                    else:
                        status = 200 if receiver.down_ok else 503
                    receiver.requests.append((self.path, status, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def ok(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, s, h, b in self.requests if p == path and s == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def wait_for(check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_webhooks_signed_retried_delivered_once(
    database_url: str, cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    account = make_account(cli)
    base = f"http://127.0.0.1:{receiver.port}"
    hook = json.loads(cli("webhook", "add", "acme", f"{base}/hook", "--json"))
    down = json.loads(cli("webhook", "add", "acme", f"{base}/down", "--event",
                          "message.rejected", "--json"))  # fmt: skip
    assert hook["secret"].startswith("whsec_") and hook["secret"] != down["secret"]
    assert "https" in cli("webhook", "add", "acme", "http://example.com/x", expect=1)
    listed = lines(cli("webhook", "list", "acme", "--json"))
    assert [w["events"] for w in listed] == [
        ["engagement.created", "contact.created", "message.rejected"],
        ["message.rejected"],
    ]
    assert all("secret" not in w for w in listed)

    daemon = start_daemon(database_url, tmp_path, webhook_backoff_seconds="0.2",
                          webhook_poll_seconds="0.1", webhook_max_attempts="2")  # fmt: skip
    try:
        assert send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")[0] == 250
        # The same message again: a duplicate, so no second event.
        assert send(daemon, read_data("bcc_simple.eml"), [account.bcc], "rita@acme.test")[0] == 250
        code, _ = send(daemon, read_data("bcc_unknown_sender.eml"), [account.bcc],
                       "mallory@evil.test")  # fmt: skip
        assert code == 550

        def settled() -> bool:
            rows = lines(cli("webhook", "deliveries", "acme", "--json"))
            return len(rows) == 6 and all(r["status"] != "pending" for r in rows)

        wait_for(settled)
        rows = lines(cli("webhook", "deliveries", "acme", "--json"))
        by_url = {
            url: sorted((r["event"], r["status"], r["attempts"]) for r in rows if r["url"] == url)
            for url in (f"{base}/hook", f"{base}/down")
        }
        assert by_url[f"{base}/hook"] == [
            ("contact.created", "delivered", 2),
            ("contact.created", "delivered", 2),
            ("contact.created", "delivered", 2),
            ("engagement.created", "delivered", 2),
            ("message.rejected", "delivered", 2),
        ]
        assert by_url[f"{base}/down"] == [("message.rejected", "failed", 2)]

        # Each event reached /hook once with 200, after one 500; signed with its secret.
        delivered = receiver.ok("/hook")
        keys = [headers["idempotency-key"] for headers, _ in delivered]
        assert len(keys) == len(set(keys)) == 5
        bodies = {}
        for headers, body in delivered:
            assert verify(hook["secret"], headers["x-capture-signature"], body)
            assert not verify(down["secret"], headers["x-capture-signature"], body)
            assert not verify(hook["secret"], headers["x-capture-signature"], body + b" ")
            payload = json.loads(body)
            assert payload["id"] == headers["idempotency-key"]
            assert payload["type"] == headers["x-capture-event"] and payload["account"] == "acme"
            bodies[payload["type"], payload["id"]] = payload["data"]
        [engagement] = engagements(cli, "acme")
        data = bodies["engagement.created", f"engagement.created:{engagement['id']}"]
        assert data["engagement"]["subject"] == "Proposal for the Q3 rollout"
        assert data["engagement"]["contacts"] == engagement["contacts"]
        assert "body_text" not in data["engagement"]
        created = sorted(d["contact"]["address"] for (t, _), d in bodies.items()
                         if t == "contact.created")  # fmt: skip
        assert created == sorted(engagement["contacts"])
        [rejected] = [d for (t, _), d in bodies.items() if t == "message.rejected"]
        assert rejected["event"]["reason"] == "sender_not_user"

        # A failed delivery goes again on `webhook retry`; the running worker sends it.
        receiver.down_ok = True
        assert "1 deliver(ies) queued again" in cli("webhook", "retry", "acme")
        wait_for(lambda: len(receiver.ok("/down")) == 1)
        [(headers, body)] = receiver.ok("/down")
        assert verify(down["secret"], headers["x-capture-signature"], body)
        failed = lines(cli("webhook", "deliveries", "acme", "--status", "failed", "--json"))
        assert failed == []
    finally:
        assert daemon.stop() == 0
    assert "0 webhook" not in cli("webhook", "remove", "acme", f"{base}/down")
    assert len(lines(cli("webhook", "deliveries", "acme", "--json"))) == 5


def test_outbox_rolls_back_with_its_engagement(database_url: str, cli: Cli, tmp_path: Path) -> None:
    """Outbox rows commit with the engagement or not at all: a write that fails at commit
    (here: an event id already used) leaves no delivery behind."""
    account = make_account(cli)
    cli("webhook", "add", "acme", "http://127.0.0.1:9/never")
    engine = make_engine(database_url)
    try:
        store = Store(engine)
        current = load_settings(database_url=database_url, quarantine_dir=tmp_path / "q")
        service = CaptureService(store, current)
        target = store.resolve_capture_address(account.bcc)
        assert target is not None
        envelope = Envelope("rita@acme.test", account.bcc, "cli", datetime.now(UTC))
        first = CapturedMessage(envelope, target, read_data("bcc_simple.eml"))
        decision = service.decide(first)
        assert decision.action is Action.LOG
        store.record(first, decision, "evt_same", replies.for_decision)
        second = CapturedMessage(envelope, target, message("Other", "x", to="zed@initech.test"))
        decision = service.decide(second)
        assert decision.action is Action.LOG
        with pytest.raises(IntegrityError):
            store.record(second, decision, "evt_same", replies.for_decision)
    finally:
        engine.dispose()
    rows = lines(cli("webhook", "deliveries", "acme", "--json"))
    assert len(rows) == 4  # the first message: one engagement, three contacts
    assert [e["subject"] for e in engagements(cli, "acme")] == ["Proposal for the Q3 rollout"]
    assert "zed@initech.test" not in cli("contacts", "list", "acme")
