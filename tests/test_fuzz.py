"""Hostile input, generated: the parse stage, the whole pure pipeline and the forwarding parser
never raise, always decide, and stay fast, whatever the headers, MIME tree, charsets or bytes.

Bounded for CI (max_examples, deadline): the whole file runs in well under a minute.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture_server.forwarding import html_to_text, parse_forwarded
from capture_server.pipeline.message import (
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    Kind,
    Work,
)
from capture_server.pipeline.parse import parse_stage
from tests.pipeline.helpers import run, snapshot

FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=3),  # one example; a regex blow-up takes far longer
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_MESSAGE = 3.0

CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis",
            "utf-7", "utf-16", "x-unknown", "", "utf-8''", "\x00", "b\xe4d"]  # fmt: skip
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", ""]
HEADER_NAMES = ["From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To",
                "References", "Reply-To", "Sender", "Auto-Submitted", "Precedence", "List-Id",
                "Return-Path", "Received", "DKIM-Signature", "Authentication-Results",
                "X-Forwarded-For", "Content-Type", "Content-Transfer-Encoding", "MIME-Version",
                "Content-Disposition", "X-Original-To", "Delivered-To"]  # fmt: skip
ADDRESSES = ["rita@acme.test", "Rita Rep <rita@acme.test>", "carl@globex.test",
             '"Carl, \\"C\\"" <carl@globex.test>', "<>", "@", "a@b@c", "undisclosed-recipients:;",
             "group: x@y.test, z@w.test;", "noreply@globex.test", "=?utf-8?q?R=C3=A9?= <r@x.test>",
             "<proposal-1@mail.acme.test>", "((nested (comment))) x@y.test"]  # fmt: skip

FORWARD_BLOCK = (
    "FYI\n\n---------- Forwarded message ---------\nFrom: Carl <carl@globex.test>\n"
    "Date: Tue, 3 Nov 2026 at 10:15\nSubject: Pricing\nTo: Rita <rita@acme.test>\n\n"
)
nasty_bytes = st.binary(max_size=300)
nasty_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=120
) | st.sampled_from(["\x00", "\r", "\n", "\r\n\r\n", "\udcff".encode("utf-8", "surrogatepass")
                     .decode("utf-8", "replace"), "é" * 50])  # fmt: skip


@st.composite
def encoded_word(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(CHARSETS))
    payload = draw(nasty_bytes)
    if draw(st.booleans()):
        text = base64.b64encode(payload).decode()
        if draw(st.booleans()):
            text = text[: len(text) // 2]  # broken padding
        return f"=?{charset}?B?{text}?="
    return f"=?{charset}?Q?{payload.hex('=')}?="


@st.composite
def header_value(draw: st.DrawFn) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(ADDRESSES).map(str.encode),
                encoded_word().map(str.encode),
                nasty_text.map(lambda t: t.encode("utf-8")),
                nasty_bytes,
            ),
            max_size=4,
        )
    )
    separator = draw(st.sampled_from([b" ", b", ", b"\r\n ", b"\r\n\t", b"\n ", b""]))
    return separator.join(parts)


@st.composite
def header_section(draw: st.DrawFn) -> bytes:
    names = st.sampled_from(HEADER_NAMES).map(str.encode) | st.binary(min_size=1, max_size=20)
    lines = draw(st.lists(st.tuples(names, header_value()), max_size=12))
    if draw(st.booleans()):  # the usual ones, possibly duplicated by the list above
        lines = [(b"From", b"Rita Rep <rita@acme.test>"), (b"To", b"carl@globex.test"),
                 *lines]  # fmt: skip
    colon = draw(st.sampled_from([b": ", b":", b" : ", b""]))
    return b"".join(name + colon + value + b"\r\n" for name, value in lines)


@st.composite
def forwarded_text(draw: st.DrawFn) -> str:
    openings = ["---------- Forwarded message ---------", "-----Original Message-----",
                "Begin forwarded message:", "-------- Message transféré --------",
                "Von: Carl <carl@globex.test>", "On Tue, 3 Nov 2026 at 10:15, Carl wrote:",
                "________________________________"]  # fmt: skip
    fields = ["From:", "Von:", "De :", "Date:", "Sent:", "Gesendet:", "Subject:", "Betreff:",
              "To:", "An:", "Cc:", "*From:*", ">From:", "> > From:"]  # fmt: skip
    lines = draw(
        st.lists(
            st.one_of(
                st.sampled_from(openings),
                st.tuples(st.sampled_from(fields), st.sampled_from(ADDRESSES) | nasty_text).map(
                    " ".join
                ),
                st.builds(lambda n, t: ">" * n + " " + t, st.integers(0, 60), nasty_text),
                nasty_text,
            ),
            max_size=40,
        )
    )
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


@st.composite
def mime_leaf(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text/plain", "text/html", "application/octet-stream",
                                 "message/rfc822", "image/png", "text/x-bogus", ""]))  # fmt: skip
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    body = draw(nasty_bytes | forwarded_text().map(lambda t: t.encode("utf-8", "replace")))
    if encoding == "base64" and draw(st.booleans()):
        body = base64.b64encode(body)  # sometimes valid
    if kind == "message/rfc822":
        body = draw(header_section()) + b"\r\n" + body
    if kind == "text/html":
        body = b"<html><body><p>" + body + b"</p><table><tr><td>From: x@y.test</td></tr>"
    disposition = draw(st.sampled_from([b"", b"Content-Disposition: attachment; filename="
                                        b"\"=?utf-8?B?w6k=?=.pdf\"\r\n"]))  # fmt: skip
    return (
        f'Content-Type: {kind}; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n".encode("utf-8", "surrogateescape")
        + disposition
        + b"\r\n"
        + body
    )


def mime_tree() -> st.SearchStrategy[bytes]:
    def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        @st.composite
        def build(draw: st.DrawFn) -> bytes:
            subtype = draw(st.sampled_from(["mixed", "alternative", "related", "bogus"]))
            boundary = draw(st.sampled_from(["b1", "=_x", "", "a" * 80, "b1"]))
            parts = draw(st.lists(children, max_size=4))
            body = b"".join(f"\r\n--{boundary}\r\n".encode() + part for part in parts)
            if draw(st.booleans()):  # sometimes never closed
                body += f"\r\n--{boundary}--\r\n".encode()
            header = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'
            return header.encode() + b"preamble" + body

        return build()

    return st.recursive(mime_leaf(), multipart, max_leaves=8)


@st.composite
def message(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["mime", "mime", "raw", "no-blank-line", "forward"]))
    if shape == "raw":
        return draw(st.binary(max_size=2000))
    headers = draw(header_section())
    body = draw(mime_tree())
    if shape == "forward":  # a real forwarded block, then hostile text, so unwrap goes deep
        block = FORWARD_BLOCK + draw(forwarded_text())
        body = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + block.encode("utf-8", "replace")
    if shape == "no-blank-line":
        return headers + body.replace(b"\r\n\r\n", b"\r\n")
    endings = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return (headers + b"MIME-Version: 1.0\r\n" + body).replace(b"\r\n", endings)


def _decide_in_time(raw: bytes, kind: Kind) -> Decision:
    started = time.monotonic()
    decision = run(raw, kind)
    assert time.monotonic() - started < SECONDS_PER_MESSAGE
    assert isinstance(decision, Decision)
    assert decision.trace  # every decision says how it was reached
    return decision


@FUZZ
@given(message())
def test_parse_stage_never_raises(raw: bytes) -> None:
    envelope = Envelope("rita@acme.test", "acme-bcc@capture.localhost", "test",
                        datetime(2026, 11, 23, tzinfo=UTC))  # fmt: skip
    work = Work(CapturedMessage(envelope, CaptureTarget(7, "acme", Kind.BCC), raw), snapshot())
    result = parse_stage(work)
    assert isinstance(result, Work | Decision)


@settings(FUZZ, max_examples=250)
@given(message(), st.sampled_from(list(Kind)))
def test_pipeline_always_decides(raw: bytes, kind: Kind) -> None:
    _decide_in_time(raw, kind)


@FUZZ
@given(forwarded_text(), st.sampled_from([None, "Fwd: deal", "Re: x", "WG: AW: Fw: y", ""]))
def test_forwarding_parser_never_raises(text: str, subject: str | None) -> None:
    started = time.monotonic()
    parse_forwarded(text, subject)
    parse_forwarded(text, subject, innermost=False)
    assert time.monotonic() - started < SECONDS_PER_MESSAGE


html_fragment = st.sampled_from(["<p>", "</p>", "<br>", "<div", ">", "<!--", "-->", "<![CDATA[",
                                 "<script>", "</script>", "<style>", "&amp;", "&#0;", "&#x110000;",
                                 "&bogus;", "<table><tr><td>", "</td>", "<blockquote>", "<",
                                 "<a href='x'>", "\x00", "<b>From:</b> x@y.test"])  # fmt: skip


@FUZZ
@given(st.lists(html_fragment | nasty_text, max_size=80).map("".join))
def test_html_to_text_never_raises(html: str) -> None:
    started = time.monotonic()
    assert isinstance(html_to_text(html), str)
    assert time.monotonic() - started < SECONDS_PER_MESSAGE


def test_deep_nesting_is_decided_quickly() -> None:
    """Beyond what the strategies reach: far deeper than max_mime_depth, and deep rfc822."""
    nested = b"From: rita@acme.test\r\nTo: carl@globex.test\r\n"
    for depth in range(300):
        nested += (
            f'Content-Type: multipart/mixed; boundary="d{depth}"\r\n\r\n--d{depth}\r\n'.encode()
        )
    rfc822 = (
        b"From: rita@acme.test\r\nTo: carl@globex.test\r\n"
        + (b"Content-Type: message/rfc822\r\n\r\n" * 300)
        + b"Subject: bottom\r\n\r\nhi\r\n"
    )
    for raw in (nested, rfc822):
        for kind in Kind:
            _decide_in_time(raw, kind)
