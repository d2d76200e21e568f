"""Stage: turn what the rules kept into the engagement draft the store writes."""

from __future__ import annotations

import dataclasses

from capture_server.pipeline.identity import content_hash, dedupe_key, thread_root_key
from capture_server.pipeline.message import (
    Action,
    Decision,
    Direction,
    Email,
    EngagementDraft,
    Reason,
    SharingLevel,
    Work,
)
from capture_server.pipeline.thread import subject_hash

STAGE = "shape"


def shape_stage(work: Work) -> Work | Decision:
    assert work.email is not None and work.owner_user_id is not None
    snapshot = work.snapshot
    owner = snapshot.users[work.owner_user_id]
    limit = snapshot.rules.max_attachment_bytes
    kept = tuple(a for a in work.email.attachments if a.size <= limit)
    dropped = [a for a in work.email.attachments if a.size > limit]
    email = dataclasses.replace(work.email, attachments=kept)
    # Identity comes from the email as sent, before the sharing level hides anything.
    digest = content_hash(email)
    thread_id = work.thread.thread_id if work.thread else _thread_id(work, email)
    shared = _apply_sharing(_dated(work, email), owner.sharing)
    draft = EngagementDraft(
        kind=work.message.target.kind,
        direction=work.direction or Direction.OUTGOING,
        owner_user_id=owner.id,
        owner=owner.email,
        email=shared,
        note=work.note if owner.sharing is SharingLevel.EVERYTHING else None,
        contacts=work.contacts,
        companies=work.companies,
        sharing=owner.sharing,
        dedupe_key=dedupe_key(email, digest),
        content_hash=digest,
        thread_id=thread_id,
        create_contacts=work.create_contacts,
        max_deals=snapshot.rules.max_deals,
        deals=work.thread.deals if work.thread else (),
        thread_message_ids=_thread_message_ids(work, email),
        subject_hash=subject_hash(email.subject),
        referenced_deals=work.referenced_deals,
        # Values come from the subject and body: only where the owner shares everything.
        extracted=work.extracted if owner.sharing is SharingLevel.EVERYTHING else {},
        profile_contact=work.profile_contact,
        profile=work.profile,
    )
    detail = f"engagement for {owner.email}, sharing {owner.sharing.value}"
    if dropped:
        names = ", ".join(f"{a.filename or 'unnamed'} ({a.size} bytes)" for a in dropped)
        warned = dataclasses.replace(work, warnings=(*work.warnings, f"dropped: {names}"))
        return warned.decide(
            STAGE,
            Action.LOG,
            Reason.ATTACHMENT_TOO_LARGE,
            f"{detail}; attachment(s) over {limit} bytes dropped: {names}",
            draft,
        )
    return work.decide(STAGE, Action.LOG, Reason.LOGGED, detail, draft)


def _dated(work: Work, email: Email) -> Email:
    """An activity needs a time. Without a usable Date: the forward's own Date (the original
    was sent before it), else when the message arrived. Set after the content hash, which
    must not change from one delivery of the same message to the next."""
    if email.occurred_at is not None:
        return email
    outer = work.parsed.email.occurred_at if work.parsed else None
    return dataclasses.replace(email, occurred_at=outer or work.message.envelope.received_at)


def _thread_id(work: Work, email: Email) -> str:
    known = work.snapshot.known_threads
    for message_id in (email.in_reply_to, *reversed(email.references)):
        if message_id and message_id.lower() in known:
            return known[message_id.lower()]
    return thread_root_key(email)


def _thread_message_ids(work: Work, email: Email) -> tuple[str, ...]:
    """Ids a later reply may name: the email's own and, for a forward, the forwarding one's."""
    outer = work.parsed.email if work.parsed else email
    ids: list[str] = []
    for known in (email, outer):
        ids += [m for m in (known.message_id, known.in_reply_to, *known.references) if m]
    return tuple(dict.fromkeys(m.lower() for m in ids))


def _apply_sharing(email: Email, level: SharingLevel) -> Email:
    if level is SharingLevel.EVERYTHING:
        return email
    hidden = dataclasses.replace(email, body_text="", attachments=())
    if level is SharingLevel.METADATA:
        return dataclasses.replace(hidden, subject="")
    return hidden
