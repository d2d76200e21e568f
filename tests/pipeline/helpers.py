"""Build snapshots and messages by hand for pure stage tests (no store, no network)."""

from __future__ import annotations

from datetime import UTC, datetime

from capture_server.pipeline import STAGES, run_pipeline
from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS, ROLE_LOCAL_PARTS
from capture_server.pipeline.message import (
    AccountRules,
    AccountSnapshot,
    AddressKind,
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    Kind,
    SharingLevel,
    UserAddress,
    UserInfo,
)

RULES = AccountRules(role_local_parts=ROLE_LOCAL_PARTS, free_mail_domains=FREE_MAIL_DOMAINS)


def snapshot(
    *,
    users: dict[int, tuple[str, dict[str, AddressKind]]] | None = None,
    rules: AccountRules = RULES,
    never_log: frozenset[str] = frozenset(),
    tombstones: frozenset[str] = frozenset(),
    fallback_owner_id: int | None = None,
    sharing: dict[int, SharingLevel] | None = None,
) -> AccountSnapshot:
    users = users or {
        1: ("rita@acme.test", {}),
        2: ("sam@acme.test", {}),
    }
    infos = {
        uid: UserInfo(uid, login, None, (sharing or {}).get(uid, SharingLevel.EVERYTHING))
        for uid, (login, _) in users.items()
    }
    addresses: dict[str, list[UserAddress]] = {}
    for uid, (login, extra) in users.items():
        addresses.setdefault(login, []).append(UserAddress(uid, AddressKind.LOGIN))
        for address, kind in extra.items():
            addresses.setdefault(address, []).append(UserAddress(uid, kind))
    return AccountSnapshot(
        account_id=7,
        slug="acme",
        domains=frozenset({"acme.test"}),
        users=infos,
        addresses={key: tuple(value) for key, value in addresses.items()},
        fallback_owner_id=fallback_owner_id,
        never_log=never_log,
        tombstones=tombstones,
        rules=rules,
    )


def run(
    raw: bytes,
    kind: Kind = Kind.BCC,
    mail_from: str = "rita@acme.test",
    snap: AccountSnapshot | None = None,
    received_at: datetime = datetime(2026, 11, 23, tzinfo=UTC),
) -> Decision:
    envelope = Envelope(mail_from, f"acme-{kind.value}@capture.localhost", "test", received_at)
    message = CapturedMessage(envelope, CaptureTarget(7, "acme", kind), raw)
    return run_pipeline(message, snap or snapshot(), STAGES)
