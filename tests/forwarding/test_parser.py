"""Realistic forwards not in the shared corpus, subject prefixes, dates, HTML, hostile input."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from capture_server.forwarding import (
    Mailbox,
    html_to_text,
    parse_forwarded,
    parse_mailbox_list,
    parse_printed_date,
    strip_forward_prefixes,
)

# --------------------------------------------------------------------------- clients

OUTLOOK_DESKTOP = """\
Hi Sam, can you log this one against the Acme renewal?

Thanks
Pat

-----Original Message-----
From: Jane Customer <jane@customer.example>
Sent: Tuesday, March 5, 2024 9:14 AM
To: Pat Rep <pat@vendor.example>; 'Sam Boss' <sam@vendor.example>
Cc: Procurement Team <buy@customer.example>; legal@customer.example
Subject: RE: Renewal pricing

Hello Pat,

We would like to move forward with the 3-year option.

Best,
Jane
"""


def test_outlook_desktop_original_message() -> None:
    block = parse_forwarded(OUTLOOK_DESKTOP, "FW: Renewal pricing")
    assert block is not None
    assert block.client == "outlook"
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.date == "Tuesday, March 5, 2024 9:14 AM"
    assert block.to == (
        Mailbox("pat@vendor.example", "Pat Rep"),
        Mailbox("sam@vendor.example", "Sam Boss"),
    )
    assert block.cc == (
        Mailbox("buy@customer.example", "Procurement Team"),
        Mailbox("legal@customer.example", None),
    )
    assert block.subject == "RE: Renewal pricing"  # the original's own reply prefix stays
    assert block.body.startswith("Hello Pat,")
    assert block.body.endswith("Jane")
    assert block.note == "Hi Sam, can you log this one against the Acme renewal?\n\nThanks\nPat"
    assert block.depth == 1
    assert block.confidence >= 0.8


def test_original_message_in_a_reply_is_not_a_forward() -> None:
    # The same text sent as a reply: Outlook prints the same block for replies.
    assert parse_forwarded(OUTLOOK_DESKTOP, "RE: Renewal pricing") is None


OUTLOOK_HTML = """<html><head><style>p.MsoNormal{margin:0}</style>
<script>alert('x')</script></head>
<body lang="EN-US"><div class="WordSection1">
<p class="MsoNormal">Logging this one.<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">
<p class="MsoNormal"><b>From:</b> Jane Customer &lt;<a href="mailto:jane@customer.example">
jane@customer.example</a>&gt; <br>
<b>Sent:</b> Tuesday, March 5, 2024 9:14 AM<br>
<b>To:</b> Rep Person &lt;rep@vendor.example&gt;; Boss &lt;boss@vendor.example&gt;<br>
<b>Cc:</b> Procurement &lt;buy@customer.example&gt;<br>
<b>Subject:</b> Pricing for 2024 renewal<o:p></o:p></p>
</div></div>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">Hello Rep,<o:p></o:p></p>
<p class="MsoNormal">Could you send the updated quote &amp; terms?<o:p></o:p></p>
<p class="MsoNormal">Thanks,<br>Jane<o:p></o:p></p>
</div></body></html>"""


def test_outlook_html_only_forward() -> None:
    text = html_to_text(OUTLOOK_HTML)
    assert "alert" not in text and "MsoNormal" not in text
    assert "From: Jane Customer <" in text
    block = parse_forwarded(text, "FW: Pricing for 2024 renewal")
    assert block is not None
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.to[0] == Mailbox("rep@vendor.example", "Rep Person")
    assert block.cc == (Mailbox("buy@customer.example", "Procurement"),)
    assert block.subject == "Pricing for 2024 renewal"
    assert block.date == "Tuesday, March 5, 2024 9:14 AM"
    assert block.body == "Hello Rep,\nCould you send the updated quote & terms?\nThanks,\nJane"
    assert block.note == "Logging this one."


OUTLOOK_MAILTO = """\
________________________________
From: Jane Customer [mailto:jane@customer.example]
Sent: 05 March 2024 09:14
To: Rep Person [mailto:rep@vendor.example]
Subject: Pricing

Body text.
"""


def test_outlook_mailto_brackets() -> None:
    block = parse_forwarded(OUTLOOK_MAILTO)
    assert block is not None
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.to == (Mailbox("rep@vendor.example", "Rep Person"),)
    assert block.body == "Body text."
    assert block.note is None


GMAIL_HTML = """<div dir="ltr">Please log<br><br><div class="gmail_quote">
<div dir="ltr" class="gmail_attr">---------- Forwarded message ---------<br>From:
<strong class="gmail_sendername" dir="auto">Jane Customer</strong> <span dir="auto">
&lt;<a href="mailto:jane@customer.example">jane@customer.example</a>&gt;</span><br>
Date: Tue, Mar 5, 2024 at 9:14 AM<br>Subject: Pricing for 2024 renewal<br>
To: Rep Person &lt;<a href="mailto:rep@vendor.example">rep@vendor.example</a>&gt;<br></div>
<br><br><div dir="ltr">Hello Rep,<div>Could you send the updated quote?</div><div><br></div>
<div>Thanks,</div><div>Jane</div></div></div></div>"""


def test_gmail_html_forward() -> None:
    block = parse_forwarded(html_to_text(GMAIL_HTML), "Fwd: Pricing for 2024 renewal")
    assert block is not None
    assert block.client == "gmail"
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.to == (Mailbox("rep@vendor.example", "Rep Person"),)
    assert block.date == "Tue, Mar 5, 2024 at 9:14 AM"
    assert block.subject == "Pricing for 2024 renewal"
    assert block.body == "Hello Rep,\nCould you send the updated quote?\n\nThanks,\nJane"
    assert block.note == "Please log"


APPLE_HTML = """<html><body>FYI<br><div><br><blockquote type="cite">
<div>Début du message réexpédié :</div><br>
<div><b>De: </b>Jane Customer &lt;jane@customer.example&gt;</div>
<div><b>Objet: </b><b>Tarifs</b></div>
<div><b>Date: </b>5 mars 2024 à 09:14:00 UTC+1</div>
<div><b>À: </b>rep@vendor.example</div><br>
<div><div>Bonjour,</div><blockquote>ancien message</blockquote><div>Merci</div></div>
</blockquote></div></body></html>"""


def test_apple_mail_html_blockquote() -> None:
    text = html_to_text(APPLE_HTML)
    block = parse_forwarded(text)
    assert block is not None
    assert block.client == "apple_mail"
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.subject == "Tarifs"
    assert block.to == (Mailbox("rep@vendor.example", None),)
    # One level of quoting (the forwarded block's) is removed, inner quoting is kept.
    assert block.body == "Bonjour,\n> ancien message\nMerci"
    assert block.note == "FYI"


QUOTED_FORWARD = """\
Sending this over for the CRM.

> ---------- Weitergeleitete Nachricht ---------
> Von: Jürgen Kunde <juergen@kunde.example>
> Datum: Mi., 6. März 2024 um 10:02 Uhr
> Betreff: Angebot
> An: Vertrieb <sales@vendor.example>
>
> Guten Tag,
>
> > Ihre frühere Nachricht
>
> Grüße
"""


def test_quoted_forward() -> None:
    block = parse_forwarded(QUOTED_FORWARD)
    assert block is not None
    assert block.sender == Mailbox("juergen@kunde.example", "Jürgen Kunde")
    assert block.subject == "Angebot"
    assert block.body == "Guten Tag,\n\n> Ihre frühere Nachricht\n\nGrüße"
    assert block.note == "Sending this over for the CRM."


NESTED = """\
For the record.

---------- Forwarded message ---------
From: Colleague <colleague@vendor.example>
Date: Wed, Mar 6, 2024 at 8:00 AM
Subject: Fwd: Contract question
To: Rep <rep@vendor.example>


---------- Forwarded message ---------
From: Jane Customer <jane@customer.example>
Date: Tue, Mar 5, 2024 at 9:14 AM
Subject: Contract question
To: Colleague <colleague@vendor.example>

Can we extend the trial?
"""


def test_nested_double_forward_innermost_and_outermost() -> None:
    inner = parse_forwarded(NESTED, "Fwd: Fwd: Contract question")
    assert inner is not None
    assert inner.depth == 2
    assert inner.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert inner.subject == "Contract question"
    assert inner.body == "Can we extend the trial?"
    assert inner.note == "For the record."  # what the rep wrote, outermost

    outer = parse_forwarded(NESTED, "Fwd: Fwd: Contract question", innermost=False)
    assert outer is not None
    assert outer.depth == 1
    assert outer.sender == Mailbox("colleague@vendor.example", "Colleague")
    assert outer.subject == "Contract question"  # "Fwd:" removed
    assert "Can we extend the trial?" in outer.body
    assert outer.body.startswith("---------- Forwarded message ---------")


def test_nested_under_a_short_fyi_is_unwrapped_but_a_real_message_is_not() -> None:
    fyi = NESTED.replace(
        "To: Rep <rep@vendor.example>\n\n\n", "To: Rep <rep@vendor.example>\n\nFYI\n\n"
    )
    block = parse_forwarded(fyi)
    assert block is not None and block.depth == 2
    assert block.sender is not None and block.sender.address == "jane@customer.example"

    long_note = "We discussed this at length yesterday and agreed to a pilot. " * 3
    real = NESTED.replace(
        "To: Rep <rep@vendor.example>\n\n\n", f"To: Rep <rep@vendor.example>\n\n{long_note}\n\n"
    )
    block = parse_forwarded(real)
    assert block is not None and block.depth == 1
    assert block.sender is not None and block.sender.address == "colleague@vendor.example"


NESTED_OUTLOOK = """\
________________________________
From: Colleague <colleague@vendor.example>
Sent: Wednesday, March 6, 2024 08:00
To: Rep <rep@vendor.example>
Subject: FW: Contract question

________________________________
From: Jane Customer <jane@customer.example>
Sent: Tuesday, March 5, 2024 09:14
To: Colleague <colleague@vendor.example>
Subject: Contract question

Can we extend the trial?
"""


def test_nested_outlook_forward() -> None:
    block = parse_forwarded(NESTED_OUTLOOK, "FW: FW: Contract question")
    assert block is not None
    assert (block.depth, block.client) == (2, "outlook")
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.body == "Can we extend the trial?"


SIGNATURE_WITH_SEPARATOR = """\
Please log.

--
Pat Rep | Account Executive
-----
________________________________
Vendor Inc. | +1 555 0100
-----Original Message-----
Confidential: see our policy.

---------- Forwarded message ---------
From: Jane Customer <jane@customer.example>
Date: Tue, Mar 5, 2024 at 9:14 AM
Subject: Pricing
To: Pat Rep <pat@vendor.example>

The real body.
"""


def test_separator_lines_in_a_signature_are_skipped() -> None:
    block = parse_forwarded(SIGNATURE_WITH_SEPARATOR, "Fwd: Pricing")
    assert block is not None
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.body == "The real body."
    assert block.note is not None and block.note.startswith("Please log.")
    assert block.note.endswith("Confidential: see our policy.")


ORDINARY = """\
Hi Jane,

Thanks for the call today. From: our side, the next step is the proposal.
To: recap, we agreed on three seats.

-----
Pat
"""


def test_ordinary_mail_is_not_a_forward() -> None:
    assert parse_forwarded(ORDINARY) is None
    assert parse_forwarded(ORDINARY, "Follow-up") is None
    assert parse_forwarded(ORDINARY, "Fwd: Follow-up") is None
    assert parse_forwarded("") is None


def test_reply_line_only_counts_with_a_forward_subject() -> None:
    text = (
        'Note.\n\nOn 05/03/2024 09:14, "Jane Customer" <jane@customer.example> wrote:\n\n    Hi\n'
    )
    assert parse_forwarded(text) is None
    assert parse_forwarded(text, "Re: x") is None
    block = parse_forwarded(text, "FW: x")
    assert block is not None
    assert block.client == "reply_line"
    assert block.sender == Mailbox("jane@customer.example", "Jane Customer")
    assert block.date == "05/03/2024 09:14"
    assert block.body == "Hi"
    assert block.subject == "x"
    assert block.note == "Note."


def test_bare_header_block_needs_a_forward_subject_or_a_full_block() -> None:
    text = "Note\n\nFrom: Jane <jane@customer.example>\nTo: rep@vendor.example\n\nHi\n"
    assert parse_forwarded(text, "Re: x") is None
    assert parse_forwarded(text) is None  # From + To only: too weak without a subject
    block = parse_forwarded(text, "Fwd: x")
    assert block is not None and block.client == "outlook_header"


def test_explicit_separator_without_headers_is_still_a_forward() -> None:
    block = parse_forwarded("FYI\n\n---------- Forwarded message ---------\n\nno headers here\n")
    assert block is not None
    assert block.sender is None
    assert block.confidence < 0.5


ZOHO = """\
Logging this.

============ Forwarded message ============
From: Paula Prospect <paula@umbrella.test>
To: Rita Rep <rita@acme.test>
Date: Thu, 05 Nov 2026 16:45:00 -0500
Subject: Pricing question
============ Forwarded message ============

Hi Rita
"""


def test_zoho_closing_separator() -> None:
    block = parse_forwarded(ZOHO, "Fwd: Pricing question")
    assert block is not None
    assert (block.client, block.depth) == ("zoho", 1)
    assert block.sender == Mailbox("paula@umbrella.test", "Paula Prospect")
    assert block.body == "Hi Rita"


def test_crlf_bom_and_nbsp() -> None:
    text = "\ufeffNote\r\n\r\n-------- Forwarded Message --------\r\nSubject: \tHi\r\n"
    text += "From: \tJane\u00a0Doe <jane@x.example>\r\n\r\nBody\u00a0text\r\n"
    block = parse_forwarded(text)
    assert block is not None
    assert block.sender == Mailbox("jane@x.example", "Jane Doe")
    assert block.body == "Body text"
    assert block.note == "Note"


# --------------------------------------------------------------------------- mailboxes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Doe, John <j@x.example>", [("j@x.example", "Doe, John")]),
        (
            '"Doe, John" <j@x.example>, a@b.example',
            [("j@x.example", "Doe, John"), ("a@b.example", None)],
        ),
        ("'a@b.example' <a@b.example>", [("a@b.example", None)]),
        ("John Doe", [("", "John Doe")]),
        ("j@x.example<mailto:j@x.example>", [("j@x.example", None)]),
        (
            "John<mailto:j@x.example> <j@x.example<mailto:j@x.example>> on behalf of t@x.example",
            [("j@x.example", "John")],
        ),
        (
            "«Jean» <jean@x.example>; „Jan” <jan@x.example>",
            [("jean@x.example", "Jean"), ("jan@x.example", "Jan")],
        ),
        ("", []),
    ],
)
def test_mailbox_lists(value: str, expected: list[tuple[str, str | None]]) -> None:
    assert [(m.address, m.name) for m in parse_mailbox_list(value)] == expected


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Fwd: Pricing", "Pricing"),
        ("Fw: Pricing", "Pricing"),
        ("FW: Pricing", "Pricing"),
        ("TR: Tarifs", "Tarifs"),
        ("WG: Angebot", "Angebot"),
        ("RV: Precios", "Precios"),
        ("VS: Tilbud", "Tilbud"),
        ("Doorst: Offerte", "Offerte"),
        ("ENC: Preços", "Preços"),
        ("PD: Oferta", "Oferta"),
        ("I: Offerta", "Offerta"),
        ("Rif: Offerta", "Offerta"),
        ("SV: Offert", "Offert"),
        ("VB: Offert", "Offert"),
        ("AW: Angebot", "Angebot"),
        ("Fwd: Re: Pricing", "Pricing"),
        ("Re: Fwd: TR: WG: RV: Pricing", "Pricing"),
        ("fwd:fwd:  Pricing", "Pricing"),
        ("[Fwd: Pricing]", "Pricing"),
        ("Fwd: [Fwd: Pricing]", "Pricing"),
        ("FW[2]: Pricing", "Pricing"),
        ("Pricing (fwd)", "Pricing"),
        ("İLT: Teklif", "Teklif"),
        ("Redir.: Ofertă", "Ofertă"),
        ("Пересл: Предложение", "Предложение"),
        ("Fwd:", ""),
        ("Pricing: Q3 update", "Pricing: Q3 update"),
        ("Re: Pricing", "Pricing"),
    ],
)
def test_strip_forward_prefixes(subject: str, expected: str) -> None:
    assert strip_forward_prefixes(subject) == expected


def test_strip_forward_prefixes_keeps_replies_when_asked() -> None:
    assert strip_forward_prefixes("Fwd: Re: Pricing", replies=False) == "Re: Pricing"


# --------------------------------------------------------------------------- dates

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        ("Mon, Oct 28, 2021 at 12:46 PM", datetime(2021, 10, 28, 12, 46)),
        ("Wed, Oct 27, 2021 at 9:31 AM", datetime(2021, 10, 27, 9, 31)),
        ("28. okt. 2021 kl. 12.46", datetime(2021, 10, 28, 12, 46)),
        ("le 28 oct. 2021 à 12:46", datetime(2021, 10, 28, 12, 46)),
        ("Wed, 3 Nov 2021 15:51:30 +0100", datetime(2021, 11, 3, 15, 51, 30, tzinfo=CET)),
        ("2021-10-28T12:46:00", datetime(2021, 10, 28, 12, 46)),
        ("Mi., 27. Okt. 2021 um 09:31 Uhr", datetime(2021, 10, 27, 9, 31)),
        ("mié, 27 oct 2021 a las 9:31", datetime(2021, 10, 27, 9, 31)),
        (
            "2021. október 26. 14:25:08 EEST",
            datetime(2021, 10, 26, 14, 25, 8, tzinfo=timezone(timedelta(hours=3))),
        ),
        ("26 октября 2021 г. в 14:25:08", datetime(2021, 10, 26, 14, 25, 8)),
        ("ke 27. lokak. 2021 klo 9.31", datetime(2021, 10, 27, 9, 31)),
        ("27 Eki 2021 Çar, 09:31", datetime(2021, 10, 27, 9, 31)),
        ("śr., 27 paź 2021 o 09:31", datetime(2021, 10, 27, 9, 31)),
        ("tirsdag den 2. november 2021 09.26.50 CET", datetime(2021, 11, 2, 9, 26, 50, tzinfo=CET)),
        ("28/10/2021 12:46", datetime(2021, 10, 28, 12, 46)),
        ("st 27. 10. 2021 v 9:31", datetime(2021, 10, 27, 9, 31)),
        ("2022年9月19日月曜日 17:55:44", datetime(2022, 9, 19, 17, 55, 44)),
        ("Thursday, 6 April 2023 at 16:17", datetime(2023, 4, 6, 16, 17)),
    ],
)
def test_parse_printed_date(printed: str, expected: datetime) -> None:
    assert parse_printed_date(printed) == expected


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        (
            "11/5/26 16:45 (GMT-05:00)",
            datetime(2026, 11, 5, 16, 45, tzinfo=timezone(-timedelta(hours=5))),
        ),
        ("05/11/2026 22:45", datetime(2026, 11, 5, 22, 45)),  # day-first where that fits
        ("05.11.2026 22:45", datetime(2026, 11, 5, 22, 45)),
        ("6/11/2026 08:00", datetime(2026, 11, 6, 8, 0)),  # the forward's day: day-first
        ("12/12/2026 08:00", datetime(2026, 12, 12, 8, 0)),  # not ambiguous; after: kept
    ],
)
def test_an_ambiguous_numeric_date_is_read_as_the_latest_not_after_the_forward(
    printed: str, expected: datetime
) -> None:
    """The original was written before its forward (here 6 Nov 2026): of 11/5 as 11 May or
    5 Nov, Samsung's US 5 Nov; of 05/11, Europe's 5 Nov. Without a reference: day-first."""
    forwarded_at = datetime(2026, 11, 6, 9, 12, tzinfo=timezone(timedelta(hours=1)))
    assert parse_printed_date(printed, reference=forwarded_at) == expected


@pytest.mark.parametrize(
    "printed",
    [
        "",
        "hello",
        "31/31/2021",
        "yesterday at noon",
        pytest.param("1" * 5000, id="digits"),
        pytest.param("1" * 20, id="digits20"),
    ],
)
def test_parse_printed_date_unsure(printed: str) -> None:
    assert parse_printed_date(printed) is None


# --------------------------------------------------------------------------- html


def test_html_to_text_basics() -> None:
    html = (
        "<html><head><title>t</title><style>x{}</style></head><body><p>A &amp; B</p>"
        "<p>&lt;a@b.c&gt;</p><p></p><p></p><p></p><div>line<br>two</div>"
        "<ul><li>one</li><li>two</li></ul><script>var x = '<p>';</script></body></html>"
    )
    assert html_to_text(html) == "A & B\n<a@b.c>\nline\ntwo\n- one\n- two"


def test_html_to_text_collapses_blank_lines() -> None:
    assert html_to_text("a<br><br><br><br>b") == "a\n\nb"


@pytest.mark.parametrize(
    "garbage",
    ["<", "<<<>>>", "<a <b <c", "</", "<!--", "<![CDATA[", "&#xffffffff;", "<a href='", "\x00<p>"],
)
def test_html_to_text_garbage(garbage: str) -> None:
    assert isinstance(html_to_text(garbage), str)


# --------------------------------------------------------------------------- hostile input

BOUND_SECONDS = 2.0  # whatever its growth, an input done within this is harmless


def _timed(fn: Callable[[], object]) -> float:
    start = time.thread_time()  # this thread's CPU: other processes' load does not count
    fn()
    return time.thread_time() - start


def _linear(fn: Callable[[str], object], text: str) -> None:
    """fn takes time linear in the input, whatever the machine's speed: the whole input may
    take at most 10x what its first quarter takes (linear: 4x, quadratic: 16x), or
    BOUND_SECONDS. An absolute bound alone failed on a slow, loaded host (2.4 s for a linear
    3 MB parse) while it only has to catch quadratic time (minutes)."""
    quarter = _timed(lambda: fn(text[: len(text) // 4]))
    whole = _timed(lambda: fn(text))
    assert whole < max(BOUND_SECONDS, 10 * quarter), (whole, quarter)


HOSTILE_TEXT = {
    "one_mb_line": "a" * 1_000_000,
    "one_mb_dash_line": "-" * 1_000_000,
    "one_mb_header_line": "From: " + "x" * 1_000_000,
    "from_lines": "From: a@b\n" * 100_000,
    "header_blocks": "From: a <a@b.c>\nTo: c@d.e\nSubject: s\nDate: d\n\n" * 25_000,
    "underscore_lines": ("_" * 32 + "\n") * 100_000,
    "separator_lines": "---------- Forwarded message ---------\n" * 100_000,
    "reply_lines": "On Mon, Jan 1 2024, John <j@x.y> wrote:\n" * 100_000,
    "nested_quotes": "\n".join("> " * k + "text" for k in range(2_000)),
    "deep_quote_separator": "> " * 2_000
    + "Begin forwarded message:\n"
    + "> " * 2_000
    + "From: a@b\n",
    "nested_forwards": (
        "---------- Forwarded message ---------\nFrom: a <a@b.c>\nDate: x\nSubject: s\n\n"
    )
    * 2_000
    + "body",
    "nested_quoted_forwards": "".join(
        "> " * k
        + "Begin forwarded message:\n"
        + "> " * k
        + "From: a <a@b.c>\n"
        + "> " * k
        + "Subject: s\n"
        for k in range(1, 2_000)
    ),
    "yahoo_glued": "----- Forwarded Message ----- " + "From: a <a@b>To: b@c" * 50_000,
    "angle_brackets": "From: " + "<" * 1_000_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXT))
@pytest.mark.parametrize("subject", [None, "Fwd: x", "Re: x"])
def test_hostile_text_is_bounded(name: str, subject: str | None) -> None:
    _linear(lambda text: parse_forwarded(text, subject), HOSTILE_TEXT[name])


def test_nested_forwards_depth_is_capped() -> None:
    block = parse_forwarded(HOSTILE_TEXT["nested_forwards"])
    assert block is not None
    assert 1 < block.depth <= 64


HOSTILE_HTML = {
    "open_angles": "<" * 500_000,
    "unclosed_tags": "<a" * 200_000,
    "unclosed_end_tags": "</" * 200_000,
    "unclosed_comments": "<!--" * 100_000,
    "processing": "<?" * 200_000,
    "cdata": "<![CDATA[" * 50_000,
    "declarations": "<!DOCTYPE" * 100_000,
    "quotes": '<a b="x>' * 100_000,
    "nested_blockquotes": "<blockquote>" * 50_000 + "x",
    "nested_divs": "<div>" * 100_000 + "x",
    "entities": "&#" * 200_000 + "&amp" * 100_000,
    "script": "<script>" + "<a" * 200_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HTML))
def test_hostile_html_is_bounded(name: str) -> None:
    _linear(html_to_text, HOSTILE_HTML[name])


def test_hostile_subject_and_date_are_bounded() -> None:
    _linear(strip_forward_prefixes, "Fwd: " * 200_000 + "x")
    _linear(strip_forward_prefixes, "[Fwd: " * 100_000 + "x")
    _linear(parse_printed_date, "1 " * 500_000)
