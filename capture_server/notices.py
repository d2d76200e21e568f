"""Notices to reps: whether one is due for a decision, and its text. Pure: no I/O here.

The edge (smtp/notify.py) reads the store, claims the durable rate limit and sends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from capture_server.pipeline.attribute import resolve_user
from capture_server.pipeline.filter import automated_reason, matches_never_log
from capture_server.pipeline.message import (
    AccountSnapshot,
    Action,
    CapturedMessage,
    Decision,
    Kind,
    Reason,
)
from capture_server.pipeline.parse import parse_message

# What the rep is told, per reason: (subject prefix, why, what to do).
_TEXTS: dict[Reason, tuple[str, str, str]] = {
    Reason.NO_FORWARDED_HEADER: (
        "Not logged",
        "The forwarded message could not be found in your forward.",
        "Forward the email again with your mail program's Forward button (not copy and "
        "paste), or attach it as a file (.eml).",
    ),
    Reason.NEVER_LOG: (
        "Not logged",
        "Every external person on this email is on your company's never-log list.",
        "Nothing to do if that is expected; an administrator manages the list.",
    ),
    Reason.INTERNAL_ONLY: (
        "Not logged",
        "Everyone on this email is inside your company; internal mail is not logged.",
        "Only emails with at least one external person are logged.",
    ),
    Reason.BODY_TOO_LARGE: (
        "Not logged",
        "The text of this email is larger than the limit for logged emails.",
        "Send a shorter email, or put the long part in an attachment.",
    ),
    Reason.UNPARSEABLE: (
        "Not logged",
        "The email could not be read (its structure is broken or too deeply nested).",
        "Forward it again, or attach it as a file (.eml).",
    ),
    Reason.AUTH_FAILED: (
        "Not logged",
        "An email in your name failed sender authentication (SPF/DKIM/DMARC), so it was "
        "not logged.",
        "If you sent it, ask your administrator to check your mail domain's settings; if "
        "you did not, someone may be sending mail in your name.",
    ),
    Reason.ATTACHMENT_TOO_LARGE: (
        "Logged without attachments",
        "The email was logged, but attachment(s) over the size limit were left out.",
        "Share large files by link, or log them by hand.",
    ),
}
# The reply address receives copies by a mailbox rule, unasked: only real losses are told.
_QUIET_FOR_REPLY = frozenset({Reason.NEVER_LOG, Reason.INTERNAL_ONLY})
NOTICE_REASONS = frozenset(_TEXTS)


@dataclass(frozen=True)
class Notice:
    account_id: int
    user_id: int
    to: str
    reason: Reason
    message_key: str  # one notice per message, however many capture addresses it reached
    subject: str
    body: str
    in_reply_to: str | None


def message_key(message: CapturedMessage, message_id: str | None) -> str:
    if message_id:
        return "mid:" + message_id.strip().lower()
    return "sha:" + hashlib.sha256(message.raw).hexdigest()


def plan_notice(
    decision: Decision, message: CapturedMessage, snapshot: AccountSnapshot, event_id: str
) -> tuple[Notice | None, str]:
    """The notice this decision calls for, or None and why not."""
    reason = decision.reason
    if reason not in _TEXTS:
        return None, f"no notice for {reason.value}"
    if message.target.kind is Kind.REPLY and reason in _QUIET_FOR_REPLY:
        return None, "reply address: copies arrive unasked"
    parsed = parse_message(message.raw)
    automated = automated_reason(parsed, message.envelope.mail_from)
    if automated:
        return None, f"never in reply to automated mail ({automated})"
    user_id = decision.draft.owner_user_id if decision.draft else None
    sender = parsed.email.sender
    for address in (sender.address if sender else "", message.envelope.mail_from):
        if user_id is None and address:
            user_id = resolve_user(snapshot, address)[0]
    user = snapshot.users.get(user_id) if user_id is not None else None
    if user is None:
        return None, "the sender is no user of this account"
    # Only to the user's own login, and never to an address on the never-log list.
    if matches_never_log(snapshot.never_log, user.email):
        return None, "the user's address is on the never-log list"
    subject_prefix, why, todo = _TEXTS[reason]
    original = parsed.email.subject.strip() or "(no subject)"
    lines = [
        f"Your email {original!r}, sent to the {message.target.kind.value} address, "
        + ("was logged only in part." if decision.action is Action.LOG else "was not logged."),
        "",
        why,
        todo,
    ]
    if decision.warnings:
        lines += ["", *decision.warnings]
    lines += ["", f"Reason: {reason.value}", f"Reference: {event_id}"]
    notice = Notice(
        account_id=snapshot.account_id,
        user_id=user.id,
        to=user.email,
        reason=reason,
        message_key=message_key(message, parsed.email.message_id),
        subject=f"{subject_prefix}: {original}"[:200],
        body="\n".join(lines) + "\n",
        in_reply_to=parsed.email.message_id,
    )
    return notice, "due"


def render(notice: Notice, sender: str, hostname: str) -> EmailMessage:
    """The notice as an email: plain text, marked automatic so no robot answers it."""
    email = EmailMessage()
    email["From"] = f"CRM capture <{sender}>"
    email["To"] = notice.to
    email["Subject"] = notice.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    email["Message-ID"] = make_msgid("notice", domain=hostname)
    email["Auto-Submitted"] = "auto-replied"  # RFC 3834: auto-responders leave it alone
    email["X-Auto-Response-Suppress"] = "All"
    if notice.in_reply_to:
        email["In-Reply-To"] = notice.in_reply_to
        email["References"] = notice.in_reply_to
    email.set_content(notice.body)
    return email
