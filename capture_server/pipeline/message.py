"""Frozen data that flows through the pipeline: nothing here does I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator

from capture_server.authentication.results import AuthenticationResults
from capture_server.authentication.structure import StructuralProblem
from capture_server.pipeline.bodies import EncodedBody
from capture_server.pipeline.canonical import canonical_address
from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS, ROLE_LOCAL_PARTS


class Kind(StrEnum):
    BCC = "bcc"
    FORWARD = "forward"
    REPLY = "reply"


class Action(StrEnum):
    LOG = "log"
    IGNORE = "ignore"
    REJECT = "reject"
    DEFER = "defer"  # a temporary fault: answered 4xx, the sending MTA retries


class Reason(StrEnum):
    """Stable reason codes: capture events, logs, dry-run output and notices use them."""

    LOGGED = "logged"
    SENDER_NOT_USER = "sender_not_user"
    NO_FORWARDED_HEADER = "no_forwarded_header"
    NOT_A_REPLY = "not_a_reply"
    NEVER_LOG = "never_log"
    INTERNAL_ONLY = "internal_only"
    AUTO_REPLY = "auto_reply"
    BODY_TOO_LARGE = "body_too_large"
    ATTACHMENT_TOO_LARGE = "attachment_too_large"
    DUPLICATE = "duplicate"
    AUTH_FAILED = "auth_failed"
    AUTH_TEMPERROR = "auth_temperror"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    MESSAGE_TOO_LARGE = "message_too_large"
    REPLY_RATE_LIMITED = "reply_rate_limited"
    HEADER_TOO_LARGE = "header_too_large"
    UNPARSEABLE = "unparseable"
    PRIVATE = "private"  # marked private by the rep: kept out of the store


class Direction(StrEnum):
    OUTGOING = "outgoing"
    INCOMING = "incoming"


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str | None = None

    @property
    def key(self) -> str:
        """The form addresses are matched on: case-insensitive, one form for an
        internationalised domain (canonical.py)."""
        return canonical_address(self.address)

    @property
    def domain(self) -> str:
        return self.key.rpartition("@")[2]

    def as_dict(self) -> dict[str, str | None]:
        return {"address": self.address, "name": self.name}


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str
    # The decoded content, or (a big base64 attachment) its text left in the received bytes,
    # decoded when the store writes it: never held whole (pipeline/bodies.py).
    body: bytes | EncodedBody = field(repr=False, compare=False)

    @property
    def content(self) -> bytes:
        """The whole decoded content (a new copy each time when it was left encoded)."""
        return self.body if isinstance(self.body, bytes) else self.body.decode()

    def chunks(self) -> Iterator[bytes]:
        """The decoded content in pieces: what writing a big attachment should read."""
        if isinstance(self.body, bytes):
            yield self.body
        else:
            yield from self.body.chunks()

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Email:
    """One email as it will be logged: the received one, or the original of a forward."""

    sender: Mailbox | None
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    subject: str = ""
    occurred_at: datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    body_text: str = ""
    attachments: tuple[Attachment, ...] = ()

    @property
    def participants(self) -> tuple[Mailbox, ...]:
        sender = (self.sender,) if self.sender else ()
        return sender + self.to + self.cc


@dataclass(frozen=True)
class ParsedMessage:
    """What the parse stage read from the received bytes."""

    email: Email
    headers: Mapping[str, tuple[str, ...]]  # lower-case name → values, only those rules read
    content_type: str
    body_bytes: int  # size of the text body as received, for the body-size rule
    html_only: bool
    forwarded_parts: tuple[bytes, ...]  # message/rfc822 attachments, raw
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt: str
    protocol: str  # smtp | lmtp | cli
    received_at: datetime
    client_ip: str = ""
    helo: str = ""


@dataclass(frozen=True)
class CaptureTarget:
    """What a capture address resolved to."""

    account_id: int
    account_slug: str
    kind: Kind
    # The account's version when the address resolved (RCPT): the message is judged by the
    # account as it was then, and the version is not read again per message (store/cache.py).
    account_version: int | None = field(default=None, compare=False)


class AuthMode(StrEnum):
    OFF = "off"  # no DNS, nothing checked
    REPORT = "report"  # checked and recorded, never blocks
    ENFORCE = "enforce"  # From's domain must pass aligned SPF or DKIM, else 550 5.7.26


@dataclass(frozen=True)
class AuthEvidence:
    """Sender-authentication evidence, gathered at the edge (DNS) before the pipeline runs."""

    results: AuthenticationResults | None  # None: no answer within the time budget
    structure: tuple[StructuralProblem, ...]


@dataclass(frozen=True)
class AuthReport:
    """What the authenticate stage concluded: recorded on the capture event and in dry-run."""

    mode: AuthMode
    outcome: str  # pass | fail | tempfail | skipped
    detail: str
    evidence: AuthEvidence | None

    def as_dict(self) -> dict[str, Any]:
        evidence = self.evidence
        results = evidence.results if evidence else None
        problems = evidence.structure if evidence else ()
        return {
            "mode": self.mode.value,
            "outcome": self.outcome,
            "detail": self.detail,
            "results": results.as_dict() if results else None,
            "structure": [{"code": p.code, "detail": p.detail} for p in problems],
        }


@dataclass(frozen=True)
class CapturedMessage:
    envelope: Envelope
    target: CaptureTarget
    raw: bytes = field(repr=False)
    auth: AuthEvidence | None = None  # None: not gathered (the account's auth_mode is off)


class AddressKind(StrEnum):
    LOGIN = "login"
    CONNECTED = "connected"
    ALIAS = "alias"
    TEAM = "team"


class SharingLevel(StrEnum):
    METADATA = "metadata"
    SUBJECT = "subject"
    EVERYTHING = "everything"


class ForwardOriginal(StrEnum):
    """Which message of a nested forward is the engagement."""

    INNERMOST = "innermost"
    OUTERMOST_EXTERNAL = "outermost_external"


class ContactPolicy(StrEnum):
    OFF = "off"
    OUTGOING = "outgoing"
    ALL = "all"


@dataclass(frozen=True)
class UserInfo:
    id: int
    email: str
    name: str | None
    sharing: SharingLevel = SharingLevel.EVERYTHING


@dataclass(frozen=True)
class UserAddress:
    user_id: int
    kind: AddressKind


def _reference_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    # Imported here: the pattern helpers live with the stage that uses them.
    from capture_server.pipeline.enrich import check_pattern

    for pattern in patterns:
        check_pattern(pattern, groups=1)
    return patterns


@dataclass(frozen=True)
class AccountRules:
    """Per-account rule settings with the documented defaults."""

    contact_policy: ContactPolicy = ContactPolicy.ALL
    # Nested forwards: the innermost original, or the first one from outside the account.
    forward_original: ForwardOriginal = ForwardOriginal.INNERMOST
    role_local_parts: frozenset[str] = ROLE_LOCAL_PARTS
    free_mail_domains: frozenset[str] = FREE_MAIL_DOMAINS
    max_deals: int = 5
    max_body_bytes: int = 2 * 1024 * 1024
    max_attachment_bytes: int = 50 * 1024 * 1024
    # report, not enforce: a fresh install (or a test) may have no DNS, or mail may come
    # through a relay whose IP fails SPF; enforcing then would refuse every rep's mail.
    # report records what enforce would do, so an admin can check `events` and switch.
    auth_mode: AuthMode = AuthMode.REPORT
    max_header_bytes: int = 102400
    max_mime_depth: int = 100
    # Reply capture: a "Re: <logged subject>" within this many days joins the thread when no
    # In-Reply-To/References matched (0: off, the default; subjects are easily reused).
    reply_subject_days: Annotated[int, Ge(0)] = 0
    # At most this many replies logged per external sender, per thread, per hour (0: no limit).
    reply_rate_limit: Annotated[int, Ge(0)] = 10
    # A subject holding one of these (any case) marks the message private: not logged.
    # The header X-Capture-Private: yes always does.
    private_subject_tags: frozenset[str] = frozenset({"[private]"})
    # google-re2 patterns whose first matching group is a deal id the email links to.
    deal_reference_patterns: Annotated[tuple[str, ...], AfterValidator(_reference_patterns)] = (
        r"\[deal:\s*(\d+)\]",
        r"#D-(\d+)\b",
    )
    # A field read from an external sender's signature at least this sure fills an empty
    # contact field; a less sure one is kept as a suggestion (`contacts suggestions`).
    signature_confidence: Annotated[float, Ge(0), Le(1)] = 0.8


@dataclass(frozen=True)
class ThreadInfo:
    """A logged thread, read before the pipeline for reply capture."""

    thread_id: str
    owner_user_id: int  # owner of the thread's first engagement
    last_at: datetime | None = None  # newest email of the thread (the subject-match window)
    contacts: tuple[str, ...] = ()  # primary addresses of its contacts
    companies: tuple[str, ...] = ()  # domains of its companies
    deals: tuple[int, ...] = ()
    recent_replies: int = 0  # replies logged from this message's sender in the last hour


@dataclass(frozen=True)
class Extractor:
    """An admin-defined named google-re2 pattern over subject and body (see `extractor add`)."""

    name: str
    pattern: str


@dataclass(frozen=True)
class AccountSnapshot:
    """What the store knows about an account, read once before the pipeline runs."""

    account_id: int
    slug: str
    domains: frozenset[str]
    users: Mapping[int, UserInfo]
    addresses: Mapping[str, tuple[UserAddress, ...]]  # lower-case address → users holding it
    fallback_owner_id: int | None = None
    never_log: frozenset[str] = frozenset()
    tombstones: frozenset[str] = frozenset()
    rules: AccountRules = AccountRules()
    known_threads: Mapping[str, str] = field(default_factory=dict)  # message-id → thread id
    threads: Mapping[str, ThreadInfo] = field(default_factory=dict)  # reply address only
    subject_threads: tuple[str, ...] = ()  # threads with this reply's subject, newest first
    extractors: tuple[Extractor, ...] = ()  # admin-defined named patterns

    def is_internal(self, mailbox: Mailbox) -> bool:
        domain = mailbox.domain
        return any(domain == own or domain.endswith("." + own) for own in self.domains)


@dataclass(frozen=True)
class TraceEntry:
    stage: str
    outcome: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class ProfileField:
    """A contact field read from the sender's signature (see enrichment/signature.py)."""

    field: str  # name | job_title | company_name | phone | website
    value: str
    confidence: float  # 0..1
    fill: bool  # at or above the account's signature_confidence: fills an empty field

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EngagementDraft:
    """The engagement the store will write, before it has an id."""

    kind: Kind
    direction: Direction
    owner_user_id: int
    owner: str
    email: Email
    note: str | None
    contacts: tuple[Mailbox, ...]  # external participants to find or create as contacts
    companies: tuple[str, ...]  # domains to find or create as companies
    sharing: SharingLevel
    dedupe_key: str
    content_hash: str
    thread_id: str
    create_contacts: bool = True
    max_deals: int = 5
    deals: tuple[int, ...] = ()  # the thread's deals, besides the contacts' open ones
    thread_message_ids: tuple[str, ...] = ()  # every Message-ID that leads to this thread
    subject_hash: str | None = None  # of the normalised subject, for the subject fallback
    referenced_deals: tuple[int, ...] = ()  # named in subject or body ([deal:1234], #D-1234)
    extracted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # extractor → values
    profile_contact: str | None = None  # the sender whose signature gave profile
    profile: tuple[ProfileField, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Engagement JSON of DESIGN.md section 4, without the store's id and deals."""
        email = self.email
        return {
            "kind": self.kind.value,
            "direction": self.direction.value,
            "owner": self.owner,
            "subject": email.subject,
            "occurred_at": email.occurred_at.isoformat() if email.occurred_at else None,
            "message_id": email.message_id,
            "from": email.sender.as_dict() if email.sender else None,
            "to": [mailbox.as_dict() for mailbox in email.to],
            "cc": [mailbox.as_dict() for mailbox in email.cc],
            "body_text": email.body_text,
            "attachments": [attachment.as_dict() for attachment in email.attachments],
            "contacts": [mailbox.key for mailbox in self.contacts],
            "companies": list(self.companies),
            "deals": list(dict.fromkeys((*self.deals, *self.referenced_deals))),
            "thread_id": self.thread_id,
            "note": self.note,
            "extracted": {name: list(values) for name, values in self.extracted.items()},
        }


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    trace: tuple[TraceEntry, ...]
    draft: EngagementDraft | None = None
    warnings: tuple[str, ...] = ()
    authentication: AuthReport | None = None  # None: decided before the authenticate stage


@dataclass(frozen=True)
class Work:
    """The pipeline's state between stages; each stage returns a new one or a Decision."""

    message: CapturedMessage
    snapshot: AccountSnapshot
    parsed: ParsedMessage | None = None
    owner_user_id: int | None = None
    direction: Direction | None = None
    email: Email | None = None  # what will be logged
    note: str | None = None
    contacts: tuple[Mailbox, ...] = ()
    companies: tuple[str, ...] = ()
    create_contacts: bool = True  # False: associate existing contacts only
    automated_original: str | None = None  # forward of machine mail: why (no contacts created)
    thread: ThreadInfo | None = None  # the logged thread a reply belongs to
    warnings: tuple[str, ...] = ()
    trace: tuple[TraceEntry, ...] = ()
    auth: AuthReport | None = None
    auth_from: Mailbox | None = None  # From as authentication read it; attribution uses it
    referenced_deals: tuple[int, ...] = ()
    extracted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    profile_contact: str | None = None
    profile: tuple[ProfileField, ...] = ()

    def advance(self, stage: str, outcome: str, detail: str, **changes: Any) -> Work:
        # dataclasses.replace re-runs the frozen __init__ (an object.__setattr__ per field):
        # 20 us a stage. A copy of the field dict is the same Work, 4x quicker.
        if not changes.keys() <= _WORK_FIELDS:
            raise TypeError(f"Work has no field {sorted(changes.keys() - _WORK_FIELDS)}")
        successor = object.__new__(Work)
        fields = successor.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        fields["trace"] = (*self.trace, TraceEntry(stage, outcome, detail))
        return successor

    def decide(
        self,
        stage: str,
        action: Action,
        reason: Reason,
        detail: str,
        draft: EngagementDraft | None = None,
    ) -> Decision:
        outcome = "pass" if action is Action.LOG else action.value
        trace = (*self.trace, TraceEntry(stage, outcome, detail))
        return Decision(action, reason, trace, draft, self.warnings, self.auth)


_WORK_FIELDS = frozenset(field.name for field in dataclasses.fields(Work))
