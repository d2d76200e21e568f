"""Every SMTP/LMTP reply the daemon sends, in one place. Temporary faults are 4xx, never 5xx."""

from __future__ import annotations

from capture_server.pipeline.message import Action, Decision, Reason

RCPT_OK = "250 2.1.5 OK"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
DNS_TEMPORARY_FAILURE = "451 4.4.3 Temporary DNS failure checking the sender, try again later"
INTERNAL_ERROR = "451 4.3.0 Internal error, please try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
HEADER_TOO_BIG = "552 5.3.4 Message header section exceeds the size limit"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_CONNECTIONS_FROM_YOU = "421 4.7.0 Too many connections from your address, try later"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
LINE_TOO_LONG = "500 5.5.2 Line too long"
# DATA, as aiosmtpd words them (smtp/server.py reads DATA itself).
DATA_GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"
DATA_NEEDS_RCPT = "503 Error: need RCPT command"
DATA_SYNTAX = "501 Syntax: DATA"
DATA_OK = "250 OK"

# aiosmtpd's own replies that carry no enhanced status code → ours.
_AIOSMTPD_REPLIES = {
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": LINE_TOO_LONG,
}

_REJECTS = {
    Reason.SENDER_NOT_USER: "550 5.7.1 Sender is not a user of this account, message not logged",
    Reason.AUTH_FAILED: "550 5.7.26 Sender authentication failed, message not logged",
    Reason.MESSAGE_TOO_LARGE: MESSAGE_TOO_BIG,
    Reason.HEADER_TOO_LARGE: HEADER_TOO_BIG,
}


def translate(status: str) -> str:
    return _AIOSMTPD_REPLIES.get(status, status)


def unknown_recipient(address: str) -> str:
    return f"550 5.1.1 <{_printable(address)}>: no such capture address"


def relay_denied(address: str, capture_domain: str) -> str:
    return (
        f"550 5.7.1 <{_printable(address)}>: relaying denied, "
        f"only capture addresses @{capture_domain} are accepted"
    )


def quarantined(quarantine_id: str) -> str:
    return f"250 2.0.0 Accepted and held for review as {quarantine_id}"


def for_decision(decision: Decision, engagement_id: str | None, event_id: str) -> str:
    if decision.action is Action.DEFER:
        # Never 250: the message is not acknowledged and the sending MTA keeps it.
        if decision.reason is Reason.AUTH_TEMPERROR:
            return DNS_TEMPORARY_FAILURE
        return TEMPORARY_FAILURE
    if decision.action is Action.REJECT:
        return _REJECTS.get(decision.reason, f"550 5.7.1 Not accepted: {decision.reason.value}")
    # "queued as <engagement id>" is the documented contract (DESIGN.md section 2): clients
    # and scripts read the id as the reply's last word. The engagement id is also on the
    # capture event and on every log line of the message, beside its event id.
    if decision.reason is Reason.DUPLICATE:
        return f"250 2.0.0 Already logged as {engagement_id}"
    if decision.action is Action.LOG:
        return f"250 2.0.0 queued as {engagement_id}"
    return f"250 2.0.0 Accepted, not logged: {decision.reason.value} ({event_id})"


def combine(replies: list[str]) -> str:
    """One SMTP reply for a transaction with several capture recipients.

    Any temporary fault makes the client retry all (writes are idempotent); otherwise the first
    success, or when every recipient refused the message, the first refusal.
    """
    for reply in replies:
        if reply.startswith("4"):
            return reply
    for reply in replies:
        if reply.startswith("2"):
            return reply
    return replies[0] if replies else TEMPORARY_FAILURE


def _printable(address: str) -> str:
    return "".join(c for c in address if c.isprintable() and c not in "<>")[:254]
