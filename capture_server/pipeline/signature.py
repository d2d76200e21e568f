"""Stage: the external sender's signature, read into contact fields (filled or suggested).

Only incoming mail whose sender is one of the email's contacts: a rep's own signature (BCC,
outgoing) never reaches a contact. Only where the owner shares everything, as the body does.
"""

from __future__ import annotations

from capture_server.enrichment.signature import parse_signature, region_for
from capture_server.pipeline.message import Direction, ProfileField, SharingLevel, Work

STAGE = "signature"


def signature_stage(work: Work) -> Work:
    assert work.email is not None
    sender = work.email.sender
    if work.direction is not Direction.INCOMING or sender is None:
        return work.advance(STAGE, "pass", "not incoming: no contact signature")
    if sender.key not in {contact.key for contact in work.contacts}:
        return work.advance(STAGE, "pass", "the sender is no contact")
    if work.owner_user_id is not None:
        owner = work.snapshot.users.get(work.owner_user_id)
        if owner is not None and owner.sharing is not SharingLevel.EVERYTHING:
            return work.advance(STAGE, "pass", "the owner does not share bodies")
    found = parse_signature(work.email.body_text, sender, region_for(sender.domain))
    if found is None:
        return work.advance(STAGE, "pass", "no signature")
    threshold = work.snapshot.rules.signature_confidence
    profile = tuple(
        ProfileField(f.field, f.value, f.confidence, f.confidence >= threshold)
        for f in found.fields
    )
    # Field names and confidences only: values are the contact's data, not the trace's.
    detail = "fields " + ", ".join(f"{f.field} {f.confidence:.2f}" for f in profile)
    return work.advance(STAGE, "pass", detail, profile_contact=sender.key, profile=profile)
