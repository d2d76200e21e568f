"""The read API: a real daemon (or `capture-server api`), real SMTP in, real HTTP out."""

from __future__ import annotations

import base64
import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from openapi_spec_validator import validate

from tests.conftest import Cli, _bound_ports, make_account, start_daemon


def _mail(number: int, to: str = "carl@globex.test", domain: str = "acme.test") -> bytes:
    return (
        f"From: Rita Rep <rita@{domain}>\r\nTo: Customer <{to}>\r\n"
        f"Subject: Offer {number}\r\nDate: Tue, 03 Nov 2026 10:{number % 60:02d}:00 +0100\r\n"
        f"Message-ID: <offer-{number}@mail.{domain}>\r\n\r\nOffer number {number}.\r\n"
    ).encode()


def _send(port: int, rcpt: str, *messages: bytes, sender: str = "rita@acme.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for message in messages:
            client.sendmail(sender, [rcpt], message)


def _lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _token(cli: Cli, slug: str) -> str:
    token: str = json.loads(cli("account", "token", "create", slug, "--name", "crm", "--json"))[
        "token"
    ]
    return token


def _walk(api: httpx.Client, path: str, token: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = api.get(path, params=query, headers=_auth(token))
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        assert isinstance(cursor, str)  # always: at the end, where to poll again
        if not page.json()["has_more"]:
            return items
    raise AssertionError("paging did not end")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_serves_what_the_cli_lists_to_its_account_only(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    acme = make_account(cli)
    beta = make_account(cli, "beta", "beta.test")
    acme_token, beta_token = _token(cli, "acme"), _token(cli, "beta")
    daemon = start_daemon(database_url, tmp_path, api_listen="127.0.0.1:0")
    try:
        _send(daemon.smtp_port, acme.bcc, _mail(1), _mail(2, "dana@initech.test"), _mail(3))
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.sendmail("rita@beta.test", [beta.bcc], _mail(4, domain="beta.test"))
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.ports['api']}", timeout=30) as api:
            # Exactly the public JSON of the CLI: engagements, contacts, events.
            listed = _lines(cli("engagements", "list", "acme", "--json"))
            assert len(listed) == 3
            got = api.get("/v1/engagements", headers=_auth(acme_token))
            assert got.status_code == 200
            assert got.json() == {
                "items": listed,
                "next_cursor": got.json()["next_cursor"],
                "has_more": False,
            }
            # Polling at the end: nothing new yet, the same place to poll from again.
            at_end = {"cursor": got.json()["next_cursor"]}
            again = api.get("/v1/engagements", params=at_end, headers=_auth(acme_token)).json()
            assert again == {"items": [], "next_cursor": at_end["cursor"], "has_more": False}
            one = api.get(f"/v1/engagements/{listed[1]['id']}", headers=_auth(acme_token))
            assert one.json() == listed[1]
            contacts = _lines(cli("contacts", "list", "acme", "--json"))
            assert {c["addresses"][0] for c in contacts} == {
                "carl@globex.test",
                "dana@initech.test",
            }
            assert _walk(api, "/v1/contacts", acme_token, limit=1) == contacts
            events = _lines(cli("events", "acme", "--json"))
            assert _walk(api, "/v1/events", acme_token) == events[::-1]  # oldest first

            # Filters.
            def ids(path: str, **params: Any) -> list[str]:
                return [item["id"] for item in _walk(api, path, acme_token, **params)]

            every = [row["id"] for row in listed]
            assert ids("/v1/engagements", contact="CARL@globex.test") == [every[0], every[2]]
            assert ids("/v1/engagements", contact="nobody@globex.test") == []
            assert ids("/v1/engagements", thread_id=listed[1]["thread_id"]) == [every[1]]
            assert ids("/v1/engagements", kind="bcc") == every
            assert ids("/v1/engagements", kind="forward") == []
            assert ids("/v1/engagements", since="2000-01-01") == every
            assert ids("/v1/engagements", since="2999-01-01T00:00:00+00:00") == []
            assert len(ids("/v1/events", decision="log", reason="logged")) == 3
            assert ids("/v1/events", decision="reject") == []
            assert ids("/v1/events", since="2999-01-01") == []

            # Another account's token sees its own data only; A's ids do not exist for it.
            assert (
                api.get(f"/v1/engagements/{every[0]}", headers=_auth(beta_token)).status_code == 404
            )
            beta_items = _walk(api, "/v1/engagements", beta_token)
            assert [row["subject"] for row in beta_items] == ["Offer 4"]
            assert not {row["id"] for row in beta_items} & set(every)
            assert all(
                e["engagement_id"] not in every for e in _walk(api, "/v1/events", beta_token)
            )
            assert _walk(api, "/v1/contacts", beta_token) == _lines(
                cli("contacts", "list", "beta", "--json")
            )

            # A cursor is bound to its filters and account: sent with other filters (rows
            # of another listing would be skipped) or another token, one clear 400.
            first = api.get(
                "/v1/engagements", params={"limit": 1, "kind": "bcc"}, headers=_auth(acme_token)
            ).json()
            assert [row["id"] for row in first["items"]] == every[:1] and first["has_more"]
            following = {"limit": 1, "cursor": first["next_cursor"]}
            for changed in ({"thread_id": listed[2]["thread_id"]}, {}, {"kind": "reply"}):
                bad = api.get("/v1/engagements", params={**following, **changed},
                              headers=_auth(acme_token))  # fmt: skip
                assert bad.status_code == 400, changed
                assert "other filters" in bad.json()["error"]
                assert "start again without a cursor" in bad.json()["error"]
            bad = api.get("/v1/engagements", params={**following, "kind": "bcc"},
                          headers=_auth(beta_token))  # fmt: skip
            assert bad.status_code == 400
            assert "another account" in bad.json()["error"]
            rest = _walk(api, "/v1/engagements", acme_token, kind="bcc", **following)
            assert [row["id"] for row in first["items"] + rest] == every

            # Tokens: none, unknown, revoked → 401; health and the document need none.
            assert api.get("/v1/engagements").status_code == 401
            assert api.get("/v1/contacts", headers=_auth("cs_not-a-token")).status_code == 401
            bad = api.get("/v1/events", headers={"Authorization": "Basic xyz"})
            assert bad.status_code == 401
            assert bad.headers["www-authenticate"] == "Bearer"
            token_id = _lines(cli("account", "token", "list", "beta", "--json"))[0]["id"]
            cli("account", "token", "revoke", "beta", token_id)
            revoked = api.get("/v1/engagements", headers=_auth(beta_token))
            assert revoked.status_code == 401
            assert revoked.json() == {"error": "invalid or revoked token"}
            assert api.get("/healthz").json() == {"status": "ok"}
            validate(api.get("/v1/openapi.json").json())

            # Bad parameters: one clear 400.
            for params in ({"limit": "0"}, {"limit": "501"}, {"cursor": "garbage"},
                           {"kind": "fax"}, {"since": "yesterday"}):  # fmt: skip
                bad = api.get("/v1/engagements", params=params, headers=_auth(acme_token))
                assert bad.status_code == 400, params
                assert set(bad.json()) == {"error"}
            contact_cursor = api.get(
                "/v1/contacts", params={"limit": 1}, headers=_auth(acme_token)
            ).json()["next_cursor"]
            wrong = {"cursor": contact_cursor}
            assert api.get("/v1/events", params=wrong, headers=_auth(acme_token)).status_code == 400
            # A cursor of the version that paged on (created_at, id): told to start again.
            old = base64.urlsafe_b64encode(
                json.dumps(["engagements", "2026-11-03T09:00:00+00:00", "eng_x"]).encode()
            ).decode()
            bad = api.get("/v1/engagements", params={"cursor": old}, headers=_auth(acme_token))
            assert bad.status_code == 400
            assert "earlier version" in bad.json()["error"]
    finally:
        assert daemon.stop() == 0


def test_paging_walks_every_item_once_while_mail_arrives(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    acme = make_account(cli)
    token = _token(cli, "acme")
    daemon = start_daemon(database_url, tmp_path, api_listen="127.0.0.1:0")
    try:
        _send(daemon.smtp_port, acme.bcc, *(_mail(n) for n in range(5)))
        seen: list[str] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.ports['api']}", timeout=30) as api:
            cursor = None
            arriving = iter(range(5, 11))
            while True:
                params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = api.get("/v1/engagements", params=params, headers=_auth(token)).json()
                assert len(page["items"]) <= 2
                seen.extend(item["id"] for item in page["items"])
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
                number = next(arriving, None)  # a new message between two pages
                if number is not None:
                    _send(daemon.smtp_port, acme.bcc, _mail(number))
            # Past the last page the cursor keeps going: a later mail comes next, once.
            _send(daemon.smtp_port, acme.bcc, _mail(20))
            for _ in range(2):
                params = {"limit": 2, "cursor": cursor}
                page = api.get("/v1/engagements", params=params, headers=_auth(token)).json()
                seen.extend(item["id"] for item in page["items"])
                assert not page["has_more"]
                cursor = page["next_cursor"]
        listed = [row["id"] for row in _lines(cli("engagements", "list", "acme", "--json"))]
        assert len(seen) == len(set(seen))
        assert seen == listed
        assert len(listed) > 5  # rows written while paging were walked too
    finally:
        assert daemon.stop() == 0


def test_standalone_api_command_serves_and_stops(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    make_account(cli)
    token = _token(cli, "acme")
    log_path = tmp_path / "api.log"
    env = {
        **os.environ,
        "CAPTURE_SERVER_DATABASE_URL": database_url,
        "CAPTURE_SERVER_LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "capture_server", "api", "--listen", "127.0.0.1:0"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "api" not in _bound_ports(log_path.read_text()):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{_bound_ports(log_path.read_text())['api']}"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        got = httpx.get(f"{base}/v1/engagements", headers=_auth(token), timeout=10)
        assert got.json()["items"] == [] and got.json()["has_more"] is False
        assert got.json()["next_cursor"]  # where to poll from, even before the first row
        assert httpx.get(f"{base}/v1/engagements", timeout=10).status_code == 401
        process.terminate()
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_token_commands_and_errors(sqlite_cli: Cli) -> None:
    make_account(sqlite_cli)
    created = json.loads(sqlite_cli("account", "token", "create", "acme", "--json"))
    assert created["token"].startswith("cs_") and len(created["token"]) == 35
    listed = _lines(sqlite_cli("account", "token", "list", "acme", "--json"))
    assert listed == [{key: value for key, value in created.items() if key != "token"}]
    assert "shown once" in sqlite_cli("account", "token", "create", "acme", "--name", "b")
    out = sqlite_cli("account", "token", "revoke", "acme", "tok_nope", expect=1)
    assert out.strip() == "error: no API token tok_nope in account 'acme'"
    out = sqlite_cli("account", "token", "create", "nope", expect=1)
    assert out.startswith("error: no account 'nope'")
    out = sqlite_cli("api", "--listen", "nowhere", expect=2)
    assert out.startswith("error: --listen:") and len(out.strip().splitlines()) == 1
