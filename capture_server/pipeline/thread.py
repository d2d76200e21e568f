"""Stage: the reply address logs only replies to a thread that already has a logged engagement.

The store pre-reads what this stage needs (AccountSnapshot.known_threads, .threads and
.subject_threads) from the ThreadLookup that `thread_lookup` takes from the header section.
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from capture_server.email_policy import parsed_header_section
from capture_server.forwarding.tables import LANGUAGES
from capture_server.pipeline.attribute import resolve_user
from capture_server.pipeline.filter import automated_reason
from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    Decision,
    Email,
    Kind,
    Reason,
    ThreadInfo,
    Work,
)
from capture_server.pipeline.parse import leading_header_section, message_ids

STAGE = "thread"
MAX_LOOKUP_IDS = 200

# Subject prefixes clients put before a reply or a forward, case-folded ("Re[2]:" counts too):
# these, and those the forwarding tables know per language (one list to extend). "VS" is a
# reply in Finnish and a forward in Danish and Norwegian: a reply here (both are cut anyway).
REPLY_PREFIXES = frozenset(
    {"re", "aw", "antw", "antwort", "sv", "vs", "r", "rif", "res", "ref", "réf", "odp",
     "ynt", "atb", "vá", "απ", "ha", "отв", "回复", "回覆", "答复", "返信"}
    | {prefix.casefold() for language in LANGUAGES for prefix in language.reply_prefixes}
)  # fmt: skip
FORWARD_PREFIXES = frozenset(
    {"fw", "fwd", "wg", "tr", "rv", "i", "enc", "doorst", "vl", "fs", "vb", "pd", "πρθ",
     "továbbítás", "转发", "轉寄", "転送"}
    | {prefix.casefold() for language in LANGUAGES for prefix in language.forward_prefixes}
) - REPLY_PREFIXES  # fmt: skip
_MAX_PREFIX = 16


@dataclass(frozen=True)
class ThreadLookup:
    """What the store reads before the pipeline so this stage can place a reply."""

    message_ids: tuple[str, ...]  # own Message-ID, In-Reply-To, References (lower-case)
    subject_hash: str | None  # set only when the subject reads as a reply ("Re: ...")
    sender: str | None  # the From address (case-folded), for the rate guard


def subject_key(subject: str) -> tuple[str, bool]:
    """The subject without reply/forward prefixes, case-folded; and whether it had "Re:"."""
    text = " ".join(subject.split())
    replied = False
    while True:
        cut = min((i for i in (text.find(":"), text.find("：")) if i >= 0), default=-1)
        if cut < 0 or cut > _MAX_PREFIX:
            break
        head = text[:cut].strip().casefold()
        for opening in ("[", "("):  # Re[2]: / AW(3):
            if head.endswith(("]", ")")) and opening in head:
                head = head[: head.index(opening)].strip()
        if head in REPLY_PREFIXES:
            replied = True
        elif head not in FORWARD_PREFIXES:
            break
        text = text[cut + 1 :].strip()
    return text.casefold(), replied


def subject_hash(subject: str) -> str | None:
    """Stored instead of the subject itself, so a hidden subject (sharing level) stays hidden."""
    key, _ = subject_key(subject)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32] if key else None


def thread_lookup(raw: bytes) -> ThreadLookup:
    """Read the header section alone (the body may be large); never fails on bad headers."""
    # The header section alone (parsebytes would copy the whole message twice first), and
    # the same cut as received_keys: one parse serves both.
    headers = parsed_header_section(leading_header_section(raw))
    found: list[str] = []
    subject = ""
    sender: str | None = None
    # A malformed header must never stop the message: what cannot be read is left out.
    for name in ("message-id", "in-reply-to", "references"):
        with suppress(Exception):
            for value in headers.get_all(name, []):
                found.extend(message_ids(str(value)))
    with suppress(Exception):
        subject = str(headers.get("subject", ""))
    with suppress(Exception):
        addresses = getattr(headers.get("from"), "addresses", ())
        if addresses and addresses[0].username and addresses[0].domain:
            sender = addresses[0].addr_spec.lower()
    key, replied = subject_key(subject)
    ids = tuple(dict.fromkeys(m.lower() for m in found))[:MAX_LOOKUP_IDS]
    return ThreadLookup(ids, subject_hash(key) if replied else None, sender)


def thread_stage(work: Work) -> Work | Decision:
    assert work.parsed is not None
    kind = work.message.target.kind
    if kind is not Kind.REPLY:
        return work.advance(STAGE, "skip", f"{kind.value} address: no thread required")
    snapshot = work.snapshot
    email = work.parsed.email
    own = (email.message_id or "").lower()
    if own and own in snapshot.known_threads:
        # The same email by another route (BCC, forward): the store makes it one engagement.
        thread_id = snapshot.known_threads[own]
        return work.advance(
            STAGE,
            "pass",
            f"its Message-ID is already known in thread {thread_id}",
            thread=snapshot.threads.get(thread_id),
        )
    found = _by_headers(email, snapshot) or _by_subject(work, email)
    if found is None:
        automated = automated_reason(work.parsed, work.message.envelope.mail_from)
        if automated:
            return work.decide(STAGE, Action.IGNORE, Reason.AUTO_REPLY, automated)
        how = "subject fallback on" if snapshot.rules.reply_subject_days > 0 else "subject off"
        return work.decide(
            STAGE,
            Action.IGNORE,
            Reason.NOT_A_REPLY,
            f"no In-Reply-To/References of a logged thread ({how})",
        )
    thread, how = found
    limit = snapshot.rules.reply_rate_limit
    sender = email.sender
    external = sender is not None and resolve_user(snapshot, sender.address)[0] is None
    if external and limit > 0 and thread.recent_replies >= limit:
        assert sender is not None
        return work.decide(
            STAGE,
            Action.IGNORE,
            Reason.REPLY_RATE_LIMITED,
            f"{sender.key} already has {thread.recent_replies} replies logged in thread "
            f"{thread.thread_id} within the hour (limit {limit})",
        )
    return work.advance(STAGE, "pass", f"reply in thread {thread.thread_id} ({how})", thread=thread)


def _by_headers(email: Email, snapshot: AccountSnapshot) -> tuple[ThreadInfo, str] | None:
    # The message replied to first, then References from the newest back to the root.
    candidates = [("In-Reply-To", email.in_reply_to)]
    candidates += [("References", m) for m in reversed(email.references)]
    for header, message_id in candidates:
        thread_id = snapshot.known_threads.get((message_id or "").lower())
        thread = snapshot.threads.get(thread_id) if thread_id else None
        if thread is not None:
            return thread, f"{header} {message_id}"
    return None


def _by_subject(work: Work, email: Email) -> tuple[ThreadInfo, str] | None:
    snapshot = work.snapshot
    days = snapshot.rules.reply_subject_days
    if days <= 0 or not subject_key(email.subject)[1]:
        return None
    when = email.occurred_at or work.message.envelope.received_at
    window = timedelta(days=days)
    people = {m.key for m in email.participants}
    for thread_id in snapshot.subject_threads:
        thread = snapshot.threads.get(thread_id)
        # Subjects repeat ("Re: Meeting"): the thread must share a contact and be recent.
        if thread is None or not people & set(thread.contacts):
            continue
        if _within(thread.last_at, when, window):
            return thread, f"subject matches within {days} day(s)"
    return None


def _within(last_at: datetime | None, when: datetime, window: timedelta) -> bool:
    return last_at is not None and abs(when - last_at) <= window
