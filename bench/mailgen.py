"""Deterministic, realistic BCC messages: a rep of the account writes to external contacts.

The same seed gives the same bytes, so every target of one run is fed the same load.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formataddr

ACCOUNT_DOMAIN = "bench-corp.test"
REPS = (
    ("Rita Rep", "rita"),
    ("Sam Seller", "sam"),
    ("Alex Account", "alex"),
    ("Kim Closer", "kim"),
    ("Lee Lead", "lee"),
)
_COMPANY_WORDS = [
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "vandelay",
    "stark",
    "wayne",
    "wonka",
    "acme",
    "tyrell",
    "cyberdyne",
    "soylent",
    "massive",
    "gringotts",
    "oscorp",
    "aperture",
    "blackmesa",
    "monarch",
    "dunder",
    "virtucon",
    "nakatomi",
    "zorg",
    "pied-piper",
    "bluth",
    "sterling",
    "prestige",
    "gekko",
    "krusty",
    "duff",
    "buy-n-large",
    "weyland",
    "spacely",
    "cogswell",
    "dharma",
    "rekall",
]
_FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com")
_FIRST = [
    "Ada",
    "Ben",
    "Cleo",
    "Dan",
    "Eva",
    "Finn",
    "Gus",
    "Hana",
    "Ivo",
    "Jade",
    "Karl",
    "Lena",
    "Milo",
    "Nora",
    "Omar",
    "Pia",
    "Quin",
    "Rosa",
    "Saul",
    "Tara",
    "Udo",
    "Vera",
    "Wes",
    "Xena",
    "Yuri",
    "Zoe",
]
_LAST = [
    "Abbott",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Meyer",
    "Novak",
    "Olsen",
    "Patel",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
]
_WORDS = [
    "proposal",
    "pricing",
    "renewal",
    "rollout",
    "quarter",
    "contract",
    "licence",
    "seats",
    "onboarding",
    "timeline",
    "budget",
    "stakeholder",
    "meeting",
    "follow-up",
    "discount",
    "integration",
    "security",
    "review",
    "pilot",
    "scope",
    "deliverable",
    "invoice",
    "milestone",
    "success",
    "plan",
    "support",
    "migration",
    "training",
    "kickoff",
    "demo",
    "the",
    "a",
    "of",
    "to",
    "and",
    "for",
    "with",
    "on",
    "in",
    "your",
    "our",
    "we",
    "will",
    "next",
    "week",
    "please",
    "let",
    "me",
    "know",
    "thanks",
]
_SUBJECTS = (
    "Proposal for the {q} rollout",
    "Re: Pricing for {n} seats",
    "Follow-up on our call",
    "Contract renewal {q}",
    "Next steps for the pilot",
    "Onboarding timeline",
    "Security review questions",
    "Invoice and licence details",
)


@dataclass(frozen=True)
class Person:
    name: str
    address: str


def reps() -> list[Person]:
    return [Person(name, f"{local}@{ACCOUNT_DOMAIN}") for name, local in REPS]


def company_domains(count: int) -> list[str]:
    words = _COMPANY_WORDS
    return [f"{words[i % len(words)]}{'' if i < len(words) else i}.test" for i in range(count)]


def contacts(count: int = 300, domains: int = 36, seed: int = 7) -> list[Person]:
    """A few hundred external people across a few dozen company domains (and some free mail)."""
    rng = random.Random(seed)
    companies = company_domains(domains)
    people: list[Person] = []
    seen: set[str] = set()
    while len(people) < count:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = rng.choice(_FREE_MAIL) if rng.random() < 0.08 else rng.choice(companies)
        address = f"{first}.{last}{rng.randrange(100)}@{domain}".lower()
        if address in seen:
            continue
        seen.add(address)
        people.append(Person(f"{first} {last}", address))
    return people


def _paragraphs(rng: random.Random, size: int) -> str:
    out: list[str] = []
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(8, 20)))
        line = sentence.capitalize() + "."
        out.append(line)
        total += len(line) + 1
        if rng.random() < 0.2:
            out.append("")
    return "\n".join(out)


def make_message(
    index: int,
    run_id: str,
    people: list[Person],
    size: int = 10_000,
    attachment_bytes: int = 0,
) -> bytes:
    """One BCC'd email of about `size` bytes (plus a base64 attachment of that many raw bytes)."""
    rng = random.Random(index * 7919 + 13)
    rep = reps()[index % len(REPS)]
    first = rng.choice(people)
    same_company = [p for p in people if p.address.endswith("@" + first.address.split("@")[1])]
    to = [first, *rng.sample(people, rng.randrange(0, 2))]
    cc = rng.sample(same_company, min(len(same_company), rng.randrange(0, 3)))
    subject = rng.choice(_SUBJECTS).format(q=f"Q{rng.randrange(1, 5)}", n=rng.randrange(5, 500))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=index)
    boundary = f"=_alt_{index}_{run_id}"
    mixed = f"=_mix_{index}_{run_id}"
    # text/plain ~40 % and text/html ~60 % of the body budget, as mail clients send.
    text = _paragraphs(rng, max(200, int(size * 0.43))) + f"\n\n{rep.name}\n"
    html_body = "".join(f"<p>{line}</p>\n" for line in text.split("\n") if line)
    html = f"<html><body>\n{html_body}</body></html>\n"
    headers = [
        f"From: {formataddr((rep.name, rep.address))}",
        "To: " + ", ".join(formataddr((p.name, p.address)) for p in to),
        *(["Cc: " + ", ".join(formataddr((p.name, p.address)) for p in cc)] if cc else []),
        f"Subject: {subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{run_id}.{index}@{ACCOUNT_DOMAIN}>",
        "MIME-Version: 1.0",
        "User-Agent: capture-bench/1.0",
    ]
    alternative = [
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
        "",
        text,
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
        "",
        html,
        f"--{boundary}--",
        "",
    ]
    if not attachment_bytes:
        lines = [
            *headers,
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            *alternative,
        ]
    else:
        blob = random.Random(index).randbytes(attachment_bytes)
        encoded = base64.encodebytes(blob).decode("ascii")
        lines = [
            *headers,
            f'Content-Type: multipart/mixed; boundary="{mixed}"',
            "",
            f"--{mixed}",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            *alternative,
            f"--{mixed}",
            f'Content-Type: application/pdf; name="offer-{index}.pdf"',
            f'Content-Disposition: attachment; filename="offer-{index}.pdf"',
            "Content-Transfer-Encoding: base64",
            "",
            encoded,
            f"--{mixed}--",
            "",
        ]
    return "\r\n".join(lines).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def attachment_for_total(total: int, size: int = 10_000) -> int:
    """Raw attachment bytes so that the whole message is about `total` bytes on the wire."""
    return max(0, int((total - size - 2_000) * 3 / 4 * 76 / 77))


DKIM_SELECTOR = "bench"


@dataclass(frozen=True)
class DkimKey:
    private_pem: bytes
    dns_name: str  # SELECTOR._domainkey.DOMAIN
    dns_text: str  # its TXT record


def dkim_key() -> DkimKey:
    """A fresh 2048-bit RSA key for the account's domain (served by dnsstub.py)."""
    pem, record = rsa_key_pair()
    return DkimKey(pem, f"{DKIM_SELECTOR}._domainkey.{ACCOUNT_DOMAIN}", record)


def rsa_key_pair() -> tuple[bytes, str]:
    """(PEM private key, DKIM TXT record) of a fresh 2048-bit RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def dkim_signed(raw: bytes, key: DkimKey) -> bytes:
    """The message with a DKIM-Signature (relaxed/relaxed, as most senders sign)."""
    import dkim

    signature = dkim.sign(
        raw,
        DKIM_SELECTOR.encode(),
        ACCOUNT_DOMAIN.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"cc", b"subject", b"date", b"message-id"],
    )
    return bytes(signature) + raw
