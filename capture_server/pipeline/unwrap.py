"""Stage: for the forwarding address, find the original message inside the forward."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from capture_server.forwarding import (
    ForwardedBlock,
    parse_forwarded,
    parse_printed_date,
    strip_forward_prefixes,
)
from capture_server.pipeline.attribute import resolve_user
from capture_server.pipeline.automated import automated_subject
from capture_server.pipeline.filter import automated_reason
from capture_server.pipeline.message import (
    Action,
    Decision,
    Direction,
    Email,
    ForwardOriginal,
    Kind,
    Mailbox,
    ParsedMessage,
    Reason,
    Work,
)
from capture_server.pipeline.parse import parse_message

STAGE = "unwrap"
MAX_ATTACHED_DEPTH = 10


def unwrap_stage(work: Work) -> Work | Decision:
    assert work.parsed is not None
    if work.message.target.kind is not Kind.FORWARD:
        return work.advance(STAGE, "skip", f"{work.message.target.kind.value} address: as sent")
    outer = work.parsed
    outermost = work.snapshot.rules.forward_original is ForwardOriginal.OUTERMOST_EXTERNAL

    def is_user(sender: Mailbox | None) -> bool:
        return sender is not None and resolve_user(work.snapshot, sender.address)[0] is not None

    attached = _attached(
        outer, stop_at=(lambda p: not is_user(p.email.sender)) if outermost else None
    )
    automated: str | None = None
    if attached is not None:
        inner, depth = attached
        original = inner.email
        note = outer.email.body_text or None
        how = f"message/rfc822 attachment (depth {depth})"
        # The original keeps its headers: list, bulk and auto-reply mail make no contacts.
        automated = automated_reason(inner, None)
    else:
        block = parse_forwarded(outer.email.body_text, outer.email.subject, innermost=True)
        if outermost:
            # The first block from outside the account, else the innermost as by default.
            first = parse_forwarded(outer.email.body_text, outer.email.subject, innermost=False)
            if first is not None and first.sender and not is_user(_mailbox(first.sender)):
                block = first
        if block is None:
            return work.decide(
                STAGE,
                Action.IGNORE,
                Reason.NO_FORWARDED_HEADER,
                "no forwarded header block and no attached message found",
            )
        sent = outer.email.occurred_at or work.message.envelope.received_at
        original = _email_from_block(block, outer, sent)
        note = block.note
        phrase = automated_subject(original.subject)
        automated = f"subject of an auto-reply or bounce ({phrase!r})" if phrase else None
        how = (
            f"inline block ({block.client}, confidence {block.confidence:.2f}, depth {block.depth})"
        )
    if original.sender is None:
        return work.decide(
            STAGE, Action.IGNORE, Reason.NO_FORWARDED_HEADER, f"{how} names no original sender"
        )
    # A rep forwarding their own sent mail: the original is outgoing.
    sender_is_user = resolve_user(work.snapshot, original.sender.address)[0] is not None
    direction = Direction.OUTGOING if sender_is_user else Direction.INCOMING
    detail = f"{how}: original from {original.sender.key}"
    if automated:
        detail += f"; original is automated: {automated}"
    warnings = work.warnings
    if attached is not None and len(outer.forwarded_parts) > 1:
        # One engagement a message: the others must not vanish without a word.
        left = len(outer.forwarded_parts) - 1
        warning = f"{left} more attached message(s) not logged: forward them one at a time"
        detail += f"; {warning}"
        warnings = (*warnings, warning)
    return work.advance(
        STAGE,
        "pass",
        detail,
        email=original,
        note=note,
        direction=direction,
        automated_original=automated,
        warnings=warnings,
    )


def _attached(
    outer: ParsedMessage, stop_at: Callable[[ParsedMessage], bool] | None = None
) -> tuple[ParsedMessage, int] | None:
    """Follow attached messages down to the innermost one that carries no further forward,
    or to the first one `stop_at` accepts (the outermost external sender, when configured).

    A forwarded bounce or report is the original itself, not a wrapper of the mail it quotes.
    """
    current = outer
    depth = 0
    while (
        current.forwarded_parts
        and depth < MAX_ATTACHED_DEPTH
        and not (depth and current.content_type == "multipart/report")
        and not (depth and stop_at is not None and stop_at(current))
    ):
        current = parse_message(current.forwarded_parts[0])  # big attachments cut out first
        depth += 1
    return (current, depth) if depth else None


def _mailbox(found: object) -> Mailbox | None:
    """A forwarding.Mailbox as ours; None when the client printed a name without an address,
    or an address cut by a line break ("carol@cli ent.test", a flowed line): never a contact."""
    address = getattr(found, "address", None)
    if not address or "@" not in address or any(c.isspace() for c in address):
        return None
    return Mailbox(address, getattr(found, "name", None))


def _aware(when: datetime | None) -> datetime | None:
    # A printed date rarely names its zone; UTC is the honest guess, kept consistent.
    return when.replace(tzinfo=UTC) if when and when.tzinfo is None else when


def _email_from_block(block: ForwardedBlock, outer: ParsedMessage, reference: datetime) -> Email:
    """reference: when the forward was sent; it settles a printed date that reads two ways."""

    def mailboxes(found: tuple[object, ...]) -> tuple[Mailbox, ...]:
        return tuple(m for m in (_mailbox(item) for item in found) if m is not None)

    subject = block.subject or strip_forward_prefixes(outer.email.subject)
    return Email(
        sender=_mailbox(block.sender),
        to=mailboxes(block.to),
        cc=mailboxes(block.cc),
        subject=subject,
        occurred_at=_aware(parse_printed_date(block.date, reference)) if block.date else None,
        message_id=None,
        body_text=block.body,
        # Clients re-attach the original's files to the forward.
        attachments=outer.email.attachments,
    )
