"""Stage: find the rep who owns the message; mail from no user is refused."""

from __future__ import annotations

from email.utils import getaddresses

from capture_server.authentication import domains_aligned
from capture_server.pipeline.canonical import canonical_address
from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    AddressKind,
    AuthMode,
    Decision,
    Direction,
    Kind,
    Mailbox,
    Reason,
    Work,
)

STAGE = "attribute"
# Attribution order for an address several users hold: DESIGN.md section 3.
_PRECEDENCE: tuple[tuple[str, frozenset[AddressKind]], ...] = (
    ("connected inbox", frozenset({AddressKind.CONNECTED, AddressKind.TEAM})),
    ("login email", frozenset({AddressKind.LOGIN})),
    ("alias", frozenset({AddressKind.ALIAS})),
)


_ORIGINAL_RECIPIENT_HEADERS = ("x-original-to", "delivered-to", "x-envelope-to", "envelope-to")


def _header_addresses(values: tuple[str, ...]) -> list[str]:
    """Bare addresses of an envelope-recipient header ("<a@b>" or "a@b", comma-separated)."""
    found = []
    for value in values:
        for item in value.split(","):
            address = item.strip().strip("<>").strip()
            if "@" in address and not any(c.isspace() for c in address):
                found.append(address)
    return found


def resolve_user(snapshot: AccountSnapshot, address: str) -> tuple[int | None, str]:
    """The user an address belongs to, and how it was decided."""
    holders = snapshot.addresses.get(canonical_address(address), ())
    if not holders:
        return None, "no user has this address"
    for label, kinds in _PRECEDENCE:
        users = {holder.user_id for holder in holders if holder.kind in kinds}
        if len(users) == 1:
            return users.pop(), f"unique {label}"
    if snapshot.fallback_owner_id is not None:
        return snapshot.fallback_owner_id, "shared address: the account's fallback owner"
    return min(holder.user_id for holder in holders), "shared address: the oldest user"


def attribute_stage(work: Work) -> Work | Decision:
    assert work.parsed is not None
    snapshot = work.snapshot
    email = work.parsed.email
    candidates: list[tuple[str, Mailbox | None, Direction]] = [
        # The From authentication read (its real mailbox, never a display name).
        ("From", work.auth_from or email.sender, Direction.OUTGOING)
    ]
    if work.message.target.kind is Kind.REPLY:
        # A reply copied to us from a rep's inbox: the rep is a recipient.
        candidates += [("To/Cc", m, Direction.INCOMING) for m in (*email.to, *email.cc)]
    envelope_sender = work.message.envelope.mail_from
    if work.message.target.kind is Kind.REPLY:
        # Copied by the MTA (recipient_bcc_maps): the rep may be only the envelope recipient.
        candidates += [
            (name, Mailbox(address), Direction.INCOMING)
            for name in _ORIGINAL_RECIPIENT_HEADERS
            for address in _header_addresses(work.parsed.headers.get(name, ()))
        ]
    if envelope_sender and _envelope_sender_vouched(work, envelope_sender):
        candidates.append(("envelope sender", Mailbox(envelope_sender), Direction.INCOMING))
    # "Sent on behalf of": a rep writing from an executive's or a shared mailbox (Exchange
    # delegates) is the Sender; after the envelope sender, vouched for as it is.
    candidates += [
        ("Sender", Mailbox(address), Direction.OUTGOING)
        for _, address in getaddresses(list(work.parsed.headers.get("sender", ())))
        if "@" in address and _envelope_sender_vouched(work, address)
    ]
    for where, mailbox, direction in candidates:
        if mailbox is None:
            continue
        user_id, how = resolve_user(snapshot, mailbox.address)
        if user_id is not None:
            owner = snapshot.users[user_id].email
            detail = f"owner {owner} from {where} ({how})"
            return work.advance(STAGE, "pass", detail, owner_user_id=user_id, direction=direction)
    thread = work.thread
    if thread is not None and thread.owner_user_id in snapshot.users:
        owner = snapshot.users[thread.owner_user_id].email
        return work.advance(
            STAGE,
            "pass",
            f"owner {owner}: no user received it, the owner of thread {thread.thread_id}",
            owner_user_id=thread.owner_user_id,
            direction=Direction.INCOMING,
        )
    who = email.sender.key if email.sender else "(no From)"
    return work.decide(
        STAGE,
        Action.REJECT,
        Reason.SENDER_NOT_USER,
        f"neither From {who} nor envelope sender {envelope_sender or '<>'} is a user",
    )


def _envelope_sender_vouched(work: Work, envelope_sender: str) -> bool:
    """In enforce mode, MAIL FROM (which any client can write) may name the owner only within
    the organisation whose domain authenticated the From: else an attacker authenticated as
    evil.test could write MAIL FROM:<rep@acme.test> and be logged as the rep."""
    if work.snapshot.rules.auth_mode is not AuthMode.ENFORCE:
        return True
    if work.auth_from is None:
        return False
    return domains_aligned(Mailbox(envelope_sender).domain, work.auth_from.domain, "r")
