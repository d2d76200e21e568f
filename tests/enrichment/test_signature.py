"""Signature parsing (pure): languages, formats, quoted text, and whose signature counts."""

from __future__ import annotations

import pytest

from capture_server.enrichment.duplicates import ContactKey, canonical_mailbox, duplicate_pairs
from capture_server.enrichment.signature import Signature, parse_signature, region_for
from capture_server.pipeline.message import Kind, Mailbox
from tests.pipeline.helpers import run


def values(found: Signature | None) -> dict[str, str]:
    assert found is not None
    return {f.field: f.value for f in found.fields}


def parse(body: str, address: str, name: str | None = None) -> Signature | None:
    sender = Mailbox(address, name)
    return parse_signature(body, sender, region_for(sender.domain))


CASES = [
    (  # English, sign-off, US number with the region from .us
        "Hi Rita,\n\nLooks good.\n\nBest regards,\nSarah Connor\nVP Sales | Skynet Inc.\n"
        "Phone: (415) 555-0100\nwww.skynet.us\n",
        "sarah@skynet.us", "Sarah Connor",
        {"name": "Sarah Connor", "job_title": "VP Sales", "company_name": "Skynet Inc.",
         "phone": "+14155550100", "website": "https://www.skynet.us"},
    ),
    (  # German, +49 (0)30 with the trunk zero in brackets
        "Hallo Rita,\n\ndanke.\n\nMit freundlichen Grüßen\n\nJan Müller\nLeiter Einkauf\n"
        "Beispiel GmbH\nTel. +49 (0)30 1234567\nFax +49 30 7654321\n",
        "jan.mueller@beispiel.de", "Jan Müller",
        {"name": "Jan Müller", "job_title": "Leiter Einkauf", "company_name": "Beispiel GmbH",
         "phone": "+49301234567"},
    ),
    (  # French, national format with the region from .fr
        "Bonjour,\n\nMerci pour votre offre.\n\nCordialement,\nClaire Dubois\n"
        "Directrice commerciale\nExemple SARL\nPortable : 06 12 34 56 78\n",
        "claire@exemple.fr", "Claire Dubois",
        {"name": "Claire Dubois", "job_title": "Directrice commerciale",
         "company_name": "Exemple SARL", "phone": "+33612345678"},
    ),
    (  # Spanish
        "Hola,\n\nde acuerdo.\n\nSaludos cordiales,\nLucía Fernández\nGerente de Compras\n"
        "Ejemplo S.L.\nTel: +34 912 345 678\n",
        "lucia@ejemplo.es", "Lucía Fernández",
        {"name": "Lucía Fernández", "job_title": "Gerente de Compras",
         "company_name": "Ejemplo S.L.", "phone": "+34912345678"},
    ),
    (  # Dutch
        "Hoi,\n\nprima.\n\nMet vriendelijke groet,\n\nPieter de Vries\n"
        "Hoofd Inkoop - Voorbeeld B.V.\nT: 020 123 4567\nhttps://voorbeeld.nl\n",
        "pieter@voorbeeld.nl", "Pieter de Vries",
        {"name": "Pieter de Vries", "company_name": "Voorbeeld B.V.", "phone": "+31201234567",
         "website": "https://voorbeeld.nl"},
    ),
    (  # Swedish
        "Hej,\n\ntack för offerten.\n\nMed vänlig hälsning\nAnna Svensson\nInköpschef\n"
        "Exempel AB\nMobil: +46 70 123 45 67\n",
        "anna@exempel.se", "Anna Svensson",
        {"name": "Anna Svensson", "job_title": "Inköpschef", "company_name": "Exempel AB",
         "phone": "+46701234567"},
    ),
    (  # the "-- " separator, no sign-off; no display name in From
        "Sounds good, ship it.\n\n-- \nBob Stone\nCTO, Initech LLC\n+1 212 555 0199\n",
        "bob@initech.com", None,
        {"name": "Bob Stone", "job_title": "CTO", "company_name": "Initech LLC",
         "phone": "+12125550199"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "address", "name", "expected"), CASES)
def test_signatures_in_several_languages(
    body: str, address: str, name: str | None, expected: dict[str, str]
) -> None:
    found = values(parse(body, address, name))
    for field, value in expected.items():
        assert found.get(field) == value, (field, found)


def test_confidences_are_between_zero_and_one() -> None:
    for body, address, name, _ in CASES:
        found = parse(body, address, name)
        assert found is not None
        assert all(0 <= f.confidence <= 1 for f in found.fields)


def test_a_name_alone_and_its_confidence() -> None:
    body = "Thanks!\n\nCheers,\nMaria Rossi\n"
    sure = parse(body, "maria.rossi@example.com", "Maria Rossi")
    assert sure is not None and [(f.field, f.value) for f in sure.fields] == [
        ("name", "Maria Rossi")
    ]
    assert sure.fields[0].confidence >= 0.9  # the From name says the same
    unsure = parse(body, "mr@example.com", None)
    assert unsure is not None and unsure.fields[0].confidence < 0.8  # a guess: a suggestion


def test_national_number_without_region_is_not_guessed() -> None:
    body = "Ok.\n\nRegards,\nBob Stone\n(415) 555-0100\n"
    assert region_for("initech.com") is None
    assert "phone" not in values(parse(body, "bob@initech.com", "Bob Stone"))
    assert region_for("example.co.uk") == "GB" and region_for("example.de") == "DE"


def test_the_quoted_signature_is_never_taken() -> None:
    reply = (
        "Fine by me.\n\nOn Tue, 3 Nov 2026 at 10:15, Rita Rep <rita@acme.test> wrote:\n"
        "> Offer attached.\n>\n> Best regards,\n> Rita Rep\n> Sales Director | Acme Inc\n"
        "> +1 415 555 0100\n"
    )
    assert parse(reply, "carl@globex.test", "Carl") is None
    with_own = reply.replace(
        "Fine by me.\n", "Fine by me.\n\nCheers,\nCarl Jung\nCEO, Globex Corp\n"
    )
    found = values(parse(with_own, "carl@globex.test", "Carl Jung"))
    assert found == {"name": "Carl Jung", "job_title": "CEO", "company_name": "Globex Corp"}
    outlook = (
        "Yes.\n\nKind regards\nCarl Jung\n\n________________________________\n"
        "From: Rita Rep <rita@acme.test>\nSent: Tuesday\n\nBest regards,\nRita Rep\n"
        "Sales Director\n+1 415 555 0100\n"
    )
    assert values(parse(outlook, "carl@globex.test", "Carl Jung")) == {"name": "Carl Jung"}


def test_no_signature() -> None:
    assert parse("Just a line.\nAnd another.\n", "a@b.de", "A") is None
    assert parse("", "a@b.de", None) is None


def test_a_reps_own_outgoing_mail_gives_nothing() -> None:
    raw = (
        b"From: Rita Rep <rita@acme.test>\r\nTo: Carl Jung <carl@globex.test>\r\n"
        b"Subject: Offer\r\nMessage-ID: <sig-out@acme.test>\r\n"
        b"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\n\r\n"
        b"Offer attached.\r\n\r\nBest regards,\r\nRita Rep\r\nSales Director | Acme Inc\r\n"
        b"+1 415 555 0100\r\n"
    )
    decision = run(raw, Kind.BCC)
    assert decision.draft is not None and decision.draft.profile == ()
    assert any(t.stage == "signature" and "not incoming" in t.detail for t in decision.trace)


def test_mailbox_rules_and_duplicate_pairs() -> None:
    assert canonical_mailbox("John.Doe+crm@GoogleMail.com") == "johndoe@gmail.com"
    assert canonical_mailbox("john.doe+x@globex.test") == "john.doe@globex.test"  # dots kept
    contacts = [
        ContactKey(1, "John Doe", None, ("johndoe@gmail.com",)),
        ContactKey(2, None, None, ("john.doe+news@googlemail.com",)),
        ContactKey(3, "Ann Lee", "globex.test", ("ann@globex.test",)),
        ContactKey(4, "ann  lee", "globex.test", ("a.lee@globex.test",)),
        ContactKey(5, "Ann Lee", "initech.com", ("ann@initech.com",)),
    ]
    pairs = [(p.keep.id, p.merge.id, p.reason) for p in duplicate_pairs(contacts)]
    assert pairs == [(1, 2, "same_mailbox"), (3, 4, "same_name_and_company")]
