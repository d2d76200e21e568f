"""Internationalised domains: one form whether the mail wrote Unicode or IDNA's xn-- form."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from capture_server.pipeline.canonical import (
    ascii_address,
    ascii_domain,
    canonical_address,
    canonical_domain,
)
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    AddressKind,
    Direction,
    Mailbox,
    Reason,
)
from tests.pipeline.helpers import run, snapshot

MUELLER = "xn--mller-kva.test"  # müller.test
GLOEBEX = "xn--glbex-kua.test"  # glöbex.test


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Rita@XN--MLLER-KVA.test", "rita@müller.test"),
        ("rita@Müller.Test", "rita@müller.test"),
        ("rita@mu\u0308ller.test", "rita@müller.test"),  # NFD (macOS) → NFC
        ("j@xn--strae-oqa.de", "j@straße.de"),  # IDNA 2008 (ß kept), which Python's codec refuses
        ("a@xn--bcher-kva.example.xn--p1ai", "a@bücher.example.рф"),
        ("x@xn--zz-.test", "x@xn--zz-.test"),  # not punycode: as written
        ("x@xn--abc.test", "x@xn--abc.test"),  # punycode for C1 controls: no label
        ("x@xn--ls8h.la", "x@💩.la"),
        ("  Plain@Acme.TEST ", "plain@acme.test"),
        ("xn--local@acme.test", "xn--local@acme.test"),  # a local part is never decoded
    ],
)
def test_one_form_for_an_address(written: str, canonical: str) -> None:
    assert canonical_address(written) == canonical
    assert canonical_address(canonical) == canonical  # idempotent
    assert Mailbox(written).key == canonical


def test_domains_and_their_ascii_form() -> None:
    assert canonical_domain("XN--MLLER-KVA.test") == "müller.test"
    assert ascii_domain("müller.test") == MUELLER
    assert ascii_domain("straße.de") == "xn--strae-oqa.de"
    assert ascii_address("Rita@Müller.test") == f"rita@{MUELLER}"
    assert ascii_address("rita@acme.test") is None  # nothing else to call it


def _idn_snapshot(
    never_log: frozenset[str] = frozenset(), tombstones: frozenset[str] = frozenset()
) -> AccountSnapshot:
    """An account on müller.test, as `account add --domain müller.test` stores it."""
    users: dict[int, tuple[str, dict[str, AddressKind]]] = {
        1: ("rita@müller.test", {}),
        2: ("sam@müller.test", {}),
    }
    made = snapshot(users=users, never_log=never_log, tombstones=tombstones)
    return dataclasses.replace(made, domains=frozenset({"müller.test"}))


def _message(sender: str, to: str, cc: str = "") -> bytes:
    head = f"From: Rita <{sender}>\r\nTo: Carl <{to}>\r\n" + (f"Cc: {cc}\r\n" if cc else "")
    return (head + "Subject: Offer\r\nDate: Tue, 03 Nov 2026 10:15:00 +0100\r\n"
            "Message-ID: <idn@x>\r\n\r\nHello\r\n").encode()  # fmt: skip


def test_a_rep_is_a_user_in_either_form_and_contacts_are_one() -> None:
    """A company on müller.test whose client writes xn--mller-kva.test: logged, not 550."""
    snap = _idn_snapshot()
    decision = run(
        _message(f"rita@{MUELLER}", f"carl@{GLOEBEX}", "Dana <dana@glöbex.test>"),
        mail_from=f"rita@{MUELLER}",
        snap=snap,
    )
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED), decision.trace
    draft = decision.draft
    assert draft is not None and draft.owner == "rita@müller.test"
    assert draft.direction is Direction.OUTGOING
    assert [m.key for m in draft.contacts] == ["carl@glöbex.test", "dana@glöbex.test"]
    assert draft.companies == ("glöbex.test",)
    # Mail between two reps is internal whichever form each address is written in.
    internal = run(_message("rita@müller.test", f"sam@{MUELLER}"), snap=snap)
    assert (internal.action, internal.reason) == (Action.IGNORE, Reason.INTERNAL_ONLY)


def test_never_log_and_tombstones_hold_in_either_form() -> None:
    blocked = _idn_snapshot(never_log=frozenset({"glöbex.test"}))
    decision = run(_message("rita@müller.test", f"carl@{GLOEBEX}"), snap=blocked)
    assert (decision.action, decision.reason) == (Action.IGNORE, Reason.NEVER_LOG)
    # Erased before addresses had one form: its hash was taken of the xn-- form.
    legacy = hashlib.sha256(f"7:carl@{GLOEBEX}".encode()).hexdigest()
    current = tombstone_hash(7, "carl@glöbex.test")
    for hashes in ({legacy}, {current}):
        erased = _idn_snapshot(tombstones=frozenset(hashes))
        draft = run(_message("rita@müller.test", "carl@glöbex.test"), snap=erased).draft
        assert draft is not None and draft.contacts == ()
