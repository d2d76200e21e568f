"""Which parts make the body text and which are attachments (parse._content_parts, _body):
split bodies (Apple Mail, iOS), text files, blank plain alternatives, signature parts, line
ends and format=flowed (RFC 3676)."""

from __future__ import annotations

import base64

import pytest

from capture_server.pipeline import bodies
from capture_server.pipeline.message import Email, Kind, ParsedMessage
from capture_server.pipeline.parse import parse_bytes, parse_message, parsed_from
from tests.pipeline.helpers import run
from tests.pipeline.test_bodies import assert_same

HEAD = (
    "From: Rita Rep <rita@acme.test>\n"
    "To: Carl Customer <carl@globex.test>\n"
    "Subject: The offer\n"
    "Date: Tue, 03 Nov 2026 09:15:00 +0000\n"
    "Message-ID: <offer-1@mail.acme.test>\n"
    "MIME-Version: 1.0\n"
)
IMAGE = base64.b64encode(bytes(range(256)) * 2).decode()
PDF = base64.b64encode(b"%PDF-1.4\n" + bytes(300)).decode()


def multipart(subtype: str, *parts: str, boundary: str = "", params: str = "") -> str:
    boundary = boundary or f"b-{subtype}-{len(parts)}-{abs(hash(parts)) % 10**8}"
    body = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{params}\n\n'
        f"{body}--{boundary}--\n"
    )


def text(content: str, subtype: str = "plain", headers: str = "", params: str = "") -> str:
    return f"Content-Type: text/{subtype}; charset=utf-8{params}\n{headers}\n{content}"


def image(name: str = "photo.jpg", headers: str = "") -> str:
    return (
        f'Content-Type: image/jpeg; name="{name}"\n'
        f'Content-Disposition: inline; filename="{name}"\n'
        f"Content-Transfer-Encoding: base64\n{headers}\n{IMAGE}"
    )


def pdf(name: str = "contract.pdf") -> str:
    return (
        f'Content-Type: application/pdf; name="{name}"\n'
        f'Content-Disposition: inline; filename="{name}"\n'
        f"Content-Transfer-Encoding: base64\n\n{PDF}"
    )


def crlf(message: str) -> bytes:
    return message.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def parse(message: str) -> ParsedMessage:
    return parse_message(crlf(HEAD + message))


def files(email: Email) -> list[tuple[str | None, str]]:
    return [(a.filename, a.content_type) for a in email.attachments]


# -- 1. split bodies --------------------------------------------------------------------------


def test_ios_text_around_a_picture_is_one_body() -> None:
    parsed = parse(
        multipart(
            "mixed",
            text("Hi Carl, first paragraph before the picture.\n"),
            image(),
            text("\n\nSecond paragraph after it: the price is 42k.\n\nRita\n"),
        )
    )
    assert parsed.email.body_text == (
        "Hi Carl, first paragraph before the picture.\n\n"
        "Second paragraph after it: the price is 42k.\n\nRita"
    )
    assert files(parsed.email) == [("photo.jpg", "image/jpeg")]
    assert not parsed.html_only


def test_html_pieces_around_a_pdf_are_one_body() -> None:
    parsed = parse(
        multipart(
            "mixed",
            text("<html><body>Hi Carl, here is the contract:</body></html>", "html"),
            pdf(),
            text("<html><body>Please sign by Friday.<br>Rita</body></html>", "html"),
        )
    )
    assert parsed.email.body_text == (
        "Hi Carl, here is the contract:\n\nPlease sign by Friday.\nRita"
    )
    assert files(parsed.email) == [("contract.pdf", "application/pdf")]
    assert parsed.html_only


def test_html_pieces_inside_an_alternative_are_not_files() -> None:
    # Apple Mail: alternative [plain, mixed [html, image, html]]; the plain text is the body.
    parsed = parse(
        multipart(
            "alternative",
            text("Hi Carl, before the picture.\n\nafter the picture.\n"),
            multipart(
                "mixed",
                text("<p>Hi Carl, before the picture.</p>", "html"),
                image("a.jpg"),
                text("<p>after the picture.</p>", "html"),
            ),
        )
    )
    assert parsed.email.body_text == "Hi Carl, before the picture.\n\nafter the picture."
    assert files(parsed.email) == [("a.jpg", "image/jpeg")]


def test_html_pieces_inside_a_related_are_joined_and_its_pictures_are_files() -> None:
    parsed = parse(
        multipart(
            "alternative",
            text("\n"),
            multipart(
                "related",
                text('<p>Hi Carl, the chart:</p><img src="cid:chart">', "html"),
                image("chart.jpg", "Content-ID: <chart>\n"),
                text("<p>and the table follows.</p>", "html"),
                params='; type="text/html"',
            ),
        )
    )
    assert parsed.email.body_text == "Hi Carl, the chart:\n\nand the table follows."
    assert files(parsed.email) == [("chart.jpg", "image/jpeg")]


def test_the_body_size_is_the_sum_of_its_parts() -> None:
    first, second = "a" * 100, "b" * 50
    parsed = parse(multipart("mixed", text(first), image(), text(second)))
    assert parsed.body_bytes == len(first) + len(second)


def test_a_big_split_body_is_read_from_the_received_bytes() -> None:
    # The cut parse (bodies.py) reads every text part of the body, as the full parse does.
    big = ("Hello Carl, the offer. " * 40_000).encode()
    raw = crlf(
        HEAD
        + multipart(
            "mixed",
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(big).decode(),
            image(),
            text("The price is 42k.\nRita\n"),
        )
    )
    assert len(raw) > bodies.CUT_MIN
    parsed = assert_same(raw)
    assert parsed.email.body_text.endswith("the offer.\n\nThe price is 42k.\nRita")
    assert files(parsed.email) == [("photo.jpg", "image/jpeg")]


# -- 2. a text part with a filename is a file -------------------------------------------------


def test_a_named_text_part_is_a_file_beside_the_html_body() -> None:
    parsed = parse(
        multipart(
            "mixed",
            text("<html><body><p>Hi Carl, the real body is here.</p></body></html>", "html"),
            text(
                "2024-06-01 ERROR something\n",
                headers='Content-Disposition: inline; filename="server.log"\n',
                params='; name="server.log"',
            ),
        )
    )
    assert parsed.email.body_text == "Hi Carl, the real body is here."
    assert files(parsed.email) == [("server.log", "text/plain")]
    [log] = parsed.email.attachments
    assert log.content == b"2024-06-01 ERROR something\r\n"


# -- 3. a blank plain alternative -------------------------------------------------------------


@pytest.mark.parametrize(
    "plain",
    [
        text(""),
        text("  \n\t\n"),
        text("=20\n=20=09", headers="Content-Transfer-Encoding: quoted-printable\n"),
        text("DQogDQo=", headers="Content-Transfer-Encoding: base64\n"),
    ],
    ids=["empty", "whitespace", "quoted-printable spaces", "base64 line ends"],
)
def test_a_blank_plain_alternative_falls_back_to_the_html(plain: str) -> None:
    parsed = parse(
        multipart("alternative", plain, text("<p>Hi Carl, the real proposal.</p>", "html"))
    )
    assert parsed.email.body_text == "Hi Carl, the real proposal."
    assert parsed.html_only
    assert parsed.email.attachments == ()


def test_a_plain_stub_is_still_preferred_to_the_html() -> None:
    # Not blank: the plain text is chosen as before; and nothing else becomes a file.
    parsed = parse(
        multipart(
            "mixed",
            multipart(
                "alternative",
                text("Please use an HTML-capable client.\n"),
                text("<p>Hi Carl, the real proposal.</p>", "html"),
            ),
            text("Sent from my phone\n"),
        )
    )
    assert parsed.email.body_text == "Please use an HTML-capable client.\n\nSent from my phone"
    assert parsed.email.attachments == ()


# -- 4. signature parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "signature"),
    [
        ("application/pkcs7-signature", "application/pkcs7-signature"),
        ("application/x-pkcs7-signature", "application/x-pkcs7-signature"),
        ("application/pgp-signature", "application/pgp-signature"),
    ],
)
def test_the_signature_of_a_signed_message_is_not_a_file(protocol: str, signature: str) -> None:
    parsed = parse(
        multipart(
            "signed",
            multipart("mixed", text("Hi Carl, the signed quote.\n"), pdf("quote.pdf")),
            f'Content-Type: {signature}; name="smime.p7s"\n'
            'Content-Disposition: attachment; filename="smime.p7s"\n'
            f"Content-Transfer-Encoding: base64\n\n{IMAGE}",
            params=f'; protocol="{protocol}"; micalg=sha-256',
        )
    )
    assert parsed.email.body_text == "Hi Carl, the signed quote."
    assert files(parsed.email) == [("quote.pdf", "application/pdf")]
    # Elsewhere (not the signature of a multipart/signed) such a part is a file like any other.
    elsewhere = parse(
        multipart(
            "mixed",
            text("Here is my certificate.\n"),
            f'Content-Type: {signature}; name="smime.p7s"\n'
            'Content-Disposition: attachment; filename="smime.p7s"\n'
            f"Content-Transfer-Encoding: base64\n\n{IMAGE}",
        )
    )
    assert files(elsewhere.email) == [("smime.p7s", signature)]


def test_the_control_part_of_an_encrypted_message_is_not_a_file() -> None:
    parsed = parse(
        multipart(
            "encrypted",
            "Content-Type: application/pgp-encrypted\n\nVersion: 1\n",
            'Content-Type: application/octet-stream; name="encrypted.asc"\n'
            'Content-Disposition: inline; filename="encrypted.asc"\n\n'
            "-----BEGIN PGP MESSAGE-----\n\nhQEMA1234\n-----END PGP MESSAGE-----\n",
            params='; protocol="application/pgp-encrypted"',
        )
    )
    assert files(parsed.email) == [("encrypted.asc", "application/octet-stream")]


# -- 5. line ends -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["7bit", "base64"])
def test_body_line_ends_are_lf(encoding: str) -> None:
    content = "Hi Carl,\n\nthe offer.\nRita\n"
    if encoding == "base64":
        content = base64.encodebytes(content.replace("\n", "\r\n").encode()).decode()
    headers = f"Content-Transfer-Encoding: {encoding}\n"
    raw = crlf(HEAD + text(content, headers=headers))
    decision = run(raw, Kind.BCC)
    assert decision.draft is not None
    assert decision.draft.email.body_text == "Hi Carl,\n\nthe offer.\nRita"
    # The same message with LF line ends gives the same text.
    assert parsed_from(parse_bytes(raw.replace(b"\r\n", b"\n"))).email.body_text == (
        decision.draft.email.body_text
    )


# -- 6. format=flowed -------------------------------------------------------------------------


def test_flowed_text_is_joined() -> None:
    parsed = parse(
        text(
            "This line was wrapped by the \n"
            "client and joins the next.\n"
            " From the start: space-stuffed.\n"
            "> a quoted line that \n"
            "> flows on.\n"
            ">> deeper \n"
            "> shallower: not joined.\n"
            "A hard break.\n"
            "-- \n"
            "Rita\n",
            params="; format=flowed",
        )
    )
    assert parsed.email.body_text == (
        "This line was wrapped by the client and joins the next.\n"
        "From the start: space-stuffed.\n"
        "> a quoted line that flows on.\n"
        ">> deeper \n"
        "> shallower: not joined.\n"
        "A hard break.\n"
        "-- \n"
        "Rita"
    )


def test_flowed_delsp_removes_the_soft_break_space() -> None:
    parsed = parse(
        text(
            "Lang Wörter wer \nden geteilt.\nNew line.\n",
            params='; format="Flowed"; DelSp="yes"',
        )
    )
    assert parsed.email.body_text == "Lang Wörter werden geteilt.\nNew line."


def test_a_flowed_inline_forward_keeps_its_wrapped_recipients() -> None:
    # Thunderbird and Apple Mail wrap the forwarded header block with soft breaks too.
    body = (
        "please log\n\n"
        "Begin forwarded message:\n\n"
        "From: Bob Buyer <bob@client.test>\n"
        "Subject: Pricing\n"
        "Date: 3 June 2026 at 08:00:00 GMT\n"
        "To: Rita Rep <rita@acme.test>, Carol Longname <carol.longname@cli \n"
        "ent.test>\n\n"
        "Hi Rita, what is the price for 50  \n"  # delsp: the soft break's space comes extra
        "seats?\n"
    )
    raw = crlf(HEAD + text(body, params="; format=flowed; delsp=yes"))
    decision = run(raw, Kind.FORWARD)
    assert decision.draft is not None
    original = decision.draft.email
    assert [m.address for m in original.to] == ["rita@acme.test", "carol.longname@client.test"]
    assert original.body_text == "Hi Rita, what is the price for 50 seats?"
