"""Charset labels read as the supersets mail means (WHATWG), with fallbacks for missing or
unknown ones: the label table, the decoding, and whole messages through the pipeline."""

from __future__ import annotations

import base64

import pytest

from capture_server.pipeline import charsets
from capture_server.pipeline.parse import parse_message
from tests.pipeline.helpers import run

HEAD = (
    b"From: Rita <rita@acme.test>\r\nTo: Bob Buyer <bob@client.test>\r\n"
    b"Date: Mon, 03 Jun 2024 10:00:00 +0000\r\nMessage-ID: <cs@acme.test>\r\n"
    b"MIME-Version: 1.0\r\n"
)
CP1252_TEXT = "We\u2019re at \u20ac5,000 \u2013 \u201cfinal\u201d offer."


def message(
    body: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    encoding: bytes = b"8bit",
    subject: bytes = b"Quote",
    head: bytes = HEAD,
) -> bytes:
    return (
        head
        + b"Subject: "
        + subject
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Transfer-Encoding: "
        + encoding
        + b"\r\n\r\n"
        + body
    )


def logged_email(raw: bytes) -> tuple[str, str]:
    decision = run(raw)
    assert decision.draft is not None, decision
    return decision.draft.email.subject, decision.draft.email.body_text


# -- the label table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("iso-8859-1", "cp1252"),
        ("ISO-8859-1", "cp1252"),
        ('  "Latin1" ', "cp1252"),
        ("us-ascii", "cp1252"),
        ("ascii", "cp1252"),
        ("windows-1252", "cp1252"),
        ("x-cp1252", "cp1252"),
        ("iso-8859-9", "cp1254"),
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("x-gbk", "gb18030"),
        ("euc-kr", "cp949"),
        ("ks_c_5601-1987", "cp949"),
        ("windows-949", "cp949"),
        ("shift_jis", "cp932"),
        ("sjis", "cp932"),
        ("x-sjis", "cp932"),
        ("windows-31j", "cp932"),
        ("iso-8859-8-i", "iso8859-8"),
        ("iso-8859-8-e", "iso8859-8"),
        ("iso-8859-6-i", "iso8859-6"),
        ("iso-8859-6-e", "iso8859-6"),
        ("x-mac-roman", "mac-roman"),
        ("macintosh", "mac-roman"),
        ("tis-620", "cp874"),
        ("windows-874", "cp874"),
        ("big5", "big5hkscs"),
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ("koi8-r", "koi8-r"),
        ("iso-8859-2", "iso8859-2"),
        ("iso88592", "iso8859-2"),
        ("iso-2022-jp", "iso2022_jp"),
        ("utf-16", "utf-16"),
    ],
)
def test_labels_name_the_codec_mail_means(label: str, codec: str) -> None:
    assert charsets.codec_for(label) == codec


@pytest.mark.parametrize(
    "label",
    [
        None,
        "",
        "  ",
        "x-unknown",
        "unknown-8bit",
        "b\xe4d",
        "base64",
        "hex",
        "rot13",
        "undefined",
        "idna",
        "unicode-escape",
        "\x00",
    ],
)
def test_unknown_labels_and_codecs_that_read_no_text_name_none(label: str | None) -> None:
    assert charsets.codec_for(label) is None


def test_ascii_compatibility_leaves_out_the_shifting_codecs() -> None:
    assert all(map(charsets.ascii_compatible, ["utf-8", "cp1252", "gb18030", "cp932", "koi8-r"]))
    assert not any(map(charsets.ascii_compatible, ["utf-7", "utf-16", "iso2022_jp", "hz"]))


# -- decoding ----------------------------------------------------------------------------


def test_no_label_reads_strict_utf8_then_windows_1252() -> None:
    assert charsets.decode("Grüße 5€".encode(), None) == "Grüße 5€"
    assert charsets.decode("Grüße".encode("latin-1"), None) == "Grüße"
    assert charsets.decode(CP1252_TEXT.encode("cp1252"), "x-unknown") == CP1252_TEXT
    assert charsets.decode(b"plain", None) == "plain"


def test_a_known_label_replaces_what_it_cannot_read() -> None:
    assert charsets.decode(b"a\xffb", "utf-8") == "a\ufffdb"
    assert charsets.decode(CP1252_TEXT.encode("cp1252"), "iso-8859-1") == CP1252_TEXT


def test_ascii_bytes_in_a_shifting_codec_are_not_taken_as_ascii() -> None:
    assert charsets.decode(b"Caf+AOk-", "utf-7") == "Caf\u00e9"
    assert charsets.decode("見積".encode("iso2022_jp"), "iso-2022-jp") == "見積"


def test_end_decodes_a_prefix() -> None:
    assert charsets.decode_as(b"caf\xe9  \r\n", None, 4) == "café"
    assert charsets.decode_as(b"abc  ", "cp1252", 3) == "abc"


@pytest.mark.parametrize(
    ("head", "codec"),
    [
        (b'<html><head><meta charset="utf-8">', "utf-8"),
        (b"<META CHARSET=iso-8859-1>", "cp1252"),
        (b'<meta http-equiv="Content-Type" content="text/html; charset=gb2312">', "gb18030"),
        (b"<meta charset='utf-16le'>", "utf-8"),
        (b"<html><body>no meta", None),
        (b"<!--" + b" " * 1100 + b"--><meta charset=utf-8>", None),
    ],
)
def test_the_html_meta_charset_is_sniffed_from_the_first_kib(
    head: bytes, codec: str | None
) -> None:
    assert charsets.html_codec(head) == codec


def test_encoded_words_are_relabelled_and_raw_bytes_read() -> None:
    value = "=?iso-8859-1?Q?Price_=80?= =?GB2312*zh?B?abc?= =?x-unknown?q?a?="
    assert charsets.relabelled(value) == "=?cp1252?Q?Price_=80?= =?gb18030*zh?B?abc?= " + (
        "=?x-unknown?q?a?="
    )
    assert charsets.unescaped("f\udcfcr M\udcfcller") == "für Müller"
    assert charsets.unescaped("f\udcc3\udcbcr") == "für"
    assert charsets.unescaped("a\ud800b") == "a\ufffdb"


# -- whole messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "encoding", "expected"),
    [
        (b"text/plain; charset=iso-8859-1", CP1252_TEXT.encode("cp1252"), b"8bit", CP1252_TEXT),
        (b'text/plain; charset="us-ascii"', CP1252_TEXT.encode("cp1252"), b"8bit", CP1252_TEXT),
        (b"text/plain; charset=latin1", CP1252_TEXT.encode("cp1252"), b"8bit", CP1252_TEXT),
        (b"text/plain", "Grüße aus Köln, 5€".encode(), b"8bit", "Grüße aus Köln, 5€"),
        (b"text/plain", "Grüße aus Köln".encode("latin-1"), b"8bit", "Grüße aus Köln"),
        (b"text/plain; charset=x-unknown", "Grüße".encode("cp1252"), b"8bit", "Grüße"),
        (
            b"text/plain; charset=gb2312",
            "报价：镕 朱镕基 喆".encode("gbk"),
            b"base64",
            "报价：镕 朱镕基 喆",
        ),
        (b"text/plain; charset=euc-kr", "똠방각하 견적".encode("cp949"), b"8bit", "똠방각하 견적"),
        (b"text/plain; charset=ks_c_5601-1987", "똠방각하".encode("cp949"), b"8bit", "똠방각하"),
        (b"text/plain; charset=shift_jis", "①見積もり ～".encode("cp932"), b"8bit", "①見積もり ～"),
        (b"text/plain; charset=x-sjis", "①見積".encode("cp932"), b"8bit", "①見積"),
        (
            b"text/plain; charset=iso-8859-8-i",
            "שלום עולם".encode("iso-8859-8"),
            b"8bit",
            "שלום עולם",
        ),
        (b"text/plain; charset=iso-8859-6-e", "مرحبا".encode("iso-8859-6"), b"8bit", "مرحبا"),
        (b"text/plain; charset=x-mac-roman", "Café".encode("mac_roman"), b"8bit", "Café"),
        (b"text/plain; charset=tis-620", "ราคา€".encode("cp874"), b"8bit", "ราคา€"),
        (b"text/plain; charset=big5", "您好 報價 嘅".encode("big5hkscs"), b"8bit", "您好 報價 嘅"),
    ],
)
def test_text_bodies_decode_as_their_charset_means(
    content_type: bytes, body: bytes, encoding: bytes, expected: str
) -> None:
    if encoding == b"base64":
        body = base64.encodebytes(body)
    assert logged_email(message(body + b"\r\n", content_type, encoding))[1] == expected


@pytest.mark.parametrize(
    "meta",
    [
        b"<meta charset=utf-8>",
        b'<meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
    ],
)
@pytest.mark.parametrize("encoding", [b"base64", b"8bit"])
def test_an_html_body_without_a_charset_reads_its_meta_charset(
    meta: bytes, encoding: bytes
) -> None:
    html = b"<html><head>" + meta + b"</head><body>Gr\xc3\xbc\xc3\x9fe \xe2\x82\xac</body></html>"
    body = base64.encodebytes(html) if encoding == b"base64" else html
    assert logged_email(message(body, b"text/html", encoding))[1] == "Grüße €"


def test_a_big_base64_body_decodes_as_its_charset_means() -> None:
    """The body left in the received bytes (_text_content, its trim path)."""
    line = CP1252_TEXT + " Grüße.\n"
    text = line * (300 * 1024 // len(line))
    for content_type in (b"text/plain; charset=iso-8859-1", b"text/plain"):
        raw = message(base64.encodebytes(text.encode("cp1252")), content_type, b"base64")
        body = parse_message(raw).email.body_text
        same = body == text.strip()  # not compared by pytest: its diff of 300 KiB is slow
        assert same, body[:200]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"=?iso-8859-1?Q?Price_=80_quote_=96_=93final=94?=", "Price € quote – “final”"),
        (b"=?gb2312?B?" + base64.b64encode("报价 镕".encode("gbk")) + b"?=", "报价 镕"),
        (b"=?ks_c_5601-1987?B?" + base64.b64encode("똠방".encode("cp949")) + b"?=", "똠방"),
        (b"=?shift_jis?B?" + base64.b64encode("①見積".encode("cp932")) + b"?=", "①見積"),
        (b"=?iso-8859-8-i?B?" + base64.b64encode("שלום".encode("iso-8859-8")) + b"?=", "שלום"),
        ("Angebot für Müller".encode("latin-1"), "Angebot für Müller"),
        ("Angebot für Müller – 5€".encode("cp1252"), "Angebot für Müller – 5€"),
    ],
)
def test_subjects_decode_as_their_charset_means(subject: bytes, expected: str) -> None:
    assert logged_email(message(b"Hi\r\n", subject=subject))[0] == expected


def test_raw_8bit_subjects_read_as_utf8_where_they_are_else_windows_1252() -> None:
    assert logged_email(message(b"Hi\r\n", subject="für Müller".encode()))[0] == "für Müller"
    latin1 = "für Müller".encode("latin-1")
    assert logged_email(message(b"Hi\r\n", subject=latin1))[0] == "für Müller"


@pytest.mark.parametrize(
    ("to", "name"),
    [
        (b"=?iso-8859-1?Q?Bob_=93B=94_M=FCller?= <bob@client.test>", "Bob “B” Müller"),
        (
            b"=?gb2312?B?" + base64.b64encode("朱镕基".encode("gbk")) + b"?= <bob@client.test>",
            "朱镕基",
        ),
        ("Jürgen Groß <bob@client.test>".encode("latin-1"), "Jürgen Groß"),
    ],
)
def test_display_names_decode_as_their_charset_means(to: bytes, name: str) -> None:
    head = HEAD.replace(b"To: Bob Buyer <bob@client.test>", b"To: " + to)
    decision = run(message(b"Hi\r\n", head=head))
    assert decision.draft is not None
    assert [m.name for m in decision.draft.email.to] == [name]
