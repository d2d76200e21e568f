"""Stage: which participants become contacts, and which domains companies."""

from __future__ import annotations

from capture_server.pipeline.defaults import is_role_address
from capture_server.pipeline.filter import is_external, is_never_logged
from capture_server.pipeline.identity import is_tombstoned
from capture_server.pipeline.message import (
    ContactPolicy,
    Decision,
    Direction,
    Kind,
    Mailbox,
    Work,
)

STAGE = "match"


def match_stage(work: Work) -> Work | Decision:
    assert work.email is not None
    snapshot = work.snapshot
    rules = snapshot.rules
    email = work.email
    if work.message.target.kind is Kind.FORWARD:
        # The original's Cc recipients are not made contacts (DESIGN.md section 3).
        candidates: tuple[Mailbox, ...] = ((email.sender,) if email.sender else ()) + email.to
    else:
        candidates = email.participants
    if work.thread is not None:
        # A reply keeps its thread's contacts (existing ones: the skips below still apply).
        kept = (Mailbox(address) for address in work.thread.contacts)
        candidates += tuple(m for m in kept if not is_never_logged(snapshot, m))
    contacts: dict[str, Mailbox] = {}
    skipped: list[str] = []
    for mailbox in candidates:
        if mailbox.key in contacts or not is_external(snapshot, mailbox):
            continue
        if is_never_logged(snapshot, mailbox):
            # The filter dropped never-logged recipients; a forward's or a reply's sender
            # stays on the email, and is still never made a contact.
            skipped.append(f"{mailbox.key} (never-log list)")
        elif is_role_address(mailbox.key, rules.role_local_parts):
            skipped.append(f"{mailbox.key} (role address)")
        elif is_tombstoned(snapshot.tombstones, snapshot.account_id, mailbox.key):
            skipped.append(f"{mailbox.key} (permanently deleted)")
        else:
            contacts[mailbox.key] = mailbox
    policy_allows = rules.contact_policy is ContactPolicy.ALL or (
        rules.contact_policy is ContactPolicy.OUTGOING and work.direction is Direction.OUTGOING
    )
    # Lists, bulk mail and auto-replies never create contacts (a forwarded one is still logged).
    may_create = policy_allows and work.automated_original is None
    companies = tuple(
        dict.fromkeys(
            m.domain
            for m in contacts.values()
            if m.domain not in rules.free_mail_domains and not snapshot.is_internal(m)
        )
    )
    if work.thread is not None:
        companies = tuple(dict.fromkeys((*companies, *work.thread.companies)))
    detail = f"{len(contacts)} contact(s), {len(companies)} compan(ies)"
    if not policy_allows:
        detail += f"; contact policy {rules.contact_policy.value}: existing contacts only"
    elif work.automated_original is not None:
        detail += "; automated original: existing contacts only"
    if skipped:
        detail += "; not contacts: " + ", ".join(skipped)
    return work.advance(
        STAGE,
        "pass",
        detail,
        contacts=tuple(contacts.values()),
        companies=companies,
        create_contacts=may_create,
    )
