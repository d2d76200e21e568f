"""Stage: find the rep who owns the message; mail from no user is refused."""

from __future__ import annotations

from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    AddressKind,
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


def resolve_user(snapshot: AccountSnapshot, address: str) -> tuple[int | None, str]:
    """The user an address belongs to, and how it was decided."""
    holders = snapshot.addresses.get(address.strip().lower(), ())
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
        ("From", email.sender, Direction.OUTGOING)
    ]
    if work.message.target.kind is Kind.REPLY:
        # A reply copied to us from a rep's inbox: the rep is a recipient.
        candidates += [("To/Cc", m, Direction.INCOMING) for m in (*email.to, *email.cc)]
    envelope_sender = work.message.envelope.mail_from
    if envelope_sender:
        candidates.append(("envelope sender", Mailbox(envelope_sender), Direction.INCOMING))
    for where, mailbox, direction in candidates:
        if mailbox is None:
            continue
        user_id, how = resolve_user(snapshot, mailbox.address)
        if user_id is not None:
            owner = snapshot.users[user_id].email
            detail = f"owner {owner} from {where} ({how})"
            return work.advance(STAGE, "pass", detail, owner_user_id=user_id, direction=direction)
    who = email.sender.key if email.sender else "(no From)"
    return work.decide(
        STAGE,
        Action.REJECT,
        Reason.SENDER_NOT_USER,
        f"neither From {who} nor envelope sender {envelope_sender or '<>'} is a user",
    )
