"""The cut parse (pipeline/bodies.py, issue 10) for attached messages and base64 text bodies:
big base64 runs inside a forward-as-attachment (message/rfc822) and in a base64 text body are
left in the received bytes too, and the result is still the full parse, field for field,
forwarded_parts byte for byte."""

from __future__ import annotations

import random
from collections.abc import Callable
from email.contentmanager import ContentManager
from pathlib import Path

import pytest

from capture_server.pipeline import bodies, parse
from capture_server.pipeline.bodies import cut_runs, restore_generated
from capture_server.pipeline.message import ParsedMessage
from capture_server.pipeline.parse import parse_bytes
from tests.pipeline.test_bodies import (
    BIG,
    DATA,
    HEAD,
    TEXT,
    assert_same,
    attached,
    b64,
    blob,
    crlf,
    lean,
    mixed,
)


def took_cut(raw: bytes, cut_minimum: int = bodies.CUT_MIN) -> bool:
    """Whether parse_message(raw) kept the cut parse (no whole-message parse)."""
    cut = cut_runs(raw, cut_minimum)
    return cut is not None and parse._parsed_cut(cut) is not None


def forward(inner: str, cte: str = "") -> str:
    header = f"Content-Transfer-Encoding: {cte}\n" if cte else ""
    return f"Content-Type: message/rfc822\n{header}\n{inner}"


INNER_HEAD = HEAD.replace("offer-1@", "original-1@").replace("Subject: ", "Subject: Re: ")


def prose(size: int, seed: int = 1) -> str:
    words = ["offer", "price", "Grüße", "Angebot", "señor", "€100", "naïve", "delivery"]
    rnd = random.Random(seed)
    lines: list[str] = []
    length = 0
    while length < size:
        lines.append(" ".join(rnd.choices(words, k=10)))
        length += len(lines[-1]) + 1
    return "\n".join(lines) + "\n"


def text_part(text: bytes, subtype: str = "plain", charset: str | None = "utf-8") -> str:
    param = f'; charset="{charset}"' if charset is not None else ""
    return f"Content-Type: text/{subtype}{param}\nContent-Transfer-Encoding: base64\n\n" + b64(text)


def check(raw: bytes, cut: bool, expected: list[bool] | None = None) -> ParsedMessage:
    parsed = assert_same(raw)
    assert took_cut(raw) is cut
    if expected is not None:
        assert lean(parsed.email) == expected
    return parsed


# -- shape 1: a big attachment inside an attached message ----------------------------------

FORWARD_CASES: list[tuple[str, Callable[[], bytes], bool, list[bool]]] = [
    (
        "forward with a big pdf, crlf",
        lambda: crlf(
            HEAD + mixed(TEXT, forward(INNER_HEAD + mixed(TEXT, attached(blob()), boundary="fwd")))
        ),
        True,
        [False, True],
    ),
    (
        "forward with a big pdf, lf only (the forwarded bytes get crlf)",
        lambda: (
            HEAD + mixed(TEXT, forward(INNER_HEAD + mixed(TEXT, attached(blob()), boundary="f")))
        ).encode(),
        True,
        [False, True],
    ),
    (
        "mixed line ends inside the run",
        lambda: (
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        TEXT,
                        attached(
                            "\r\n".join(b64(blob(seed=2)).split("\n")[:3000])
                            + "\n"
                            + "\n".join(b64(blob(seed=2)).split("\n")[3000:])
                        ),
                        boundary="f",
                    )
                ),
            )
        ).encode(),
        True,
        [False, True],
    ),
    (
        "nested multiparts inside the attached message",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        mixed(
                            'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\n'
                            + TEXT
                            + "\n--alt\nContent-Type: text/html\n\n<p>Hi</p>\n--alt--",
                            attached(blob(seed=3), "deep.pdf"),
                            boundary="deep",
                        ),
                        attached(blob(seed=4), "b.zip", "application/zip"),
                        attached(blob(900, seed=5), "small.png", "image/png"),
                        boundary="fwd",
                    )
                ),
                attached(blob(seed=6), "outer.pdf"),
            )
        ),
        True,
        # document order: the attached message, its deep.pdf, b.zip, small.png, outer.pdf
        [False, True, True, False, True],
    ),
    (
        "a forward of a forward",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        TEXT,
                        forward(
                            INNER_HEAD.replace("original-1", "original-2")
                            + mixed(TEXT, attached(blob(seed=7)), boundary="in2")
                        ),
                        boundary="in1",
                    )
                ),
            )
        ),
        True,
        [False, False, True],
    ),
    (
        "the attached message's own text body is base64 (only written back out)",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + "Content-Type: text/plain; charset=utf-8\n"
                    + "Content-Transfer-Encoding: base64\n\n"
                    + b64(prose(BIG).encode())
                ),
            )
        ),
        True,
        [False],
    ),
    (
        "a run right after the attached message's headers (no empty line)",
        lambda: crlf(HEAD + mixed(TEXT, forward(INNER_HEAD + b64(blob(seed=8))))),
        True,
        [False],
    ),
    (
        "a run right after the headers of a part of the attached message",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        TEXT,
                        "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
                        + b64(blob(seed=9)),
                        boundary="fwd",
                    )
                ),
            )
        ),
        True,
        [False, True],
    ),
    (
        "missing padding inside the attached message: restored, decoded as the email package does",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(TEXT, attached(b64(blob(BIG + 1, seed=10)).rstrip("=")), boundary="f")
                ),
            )
        ),
        True,
        [False, False],
    ),
    (
        "padding in the middle inside the attached message",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        TEXT,
                        attached(b64(blob(BIG + 1, seed=11)) + "\n" + b64(blob(seed=12))),
                        boundary="f",
                    )
                ),
            )
        ),
        True,
        [False, False],
    ),
    (
        "broken base64 characters split the run inside the attached message",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(
                        TEXT,
                        attached(b64(blob(seed=13)) + "\n!!!\n" + b64(blob(seed=14))),
                        boundary="f",
                    )
                ),
            )
        ),
        True,
        [False, False],
    ),
    (
        "the attached message is base64-encoded itself (RFC 2046 says never)",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    b64(
                        crlf(
                            INNER_HEAD
                            + mixed(TEXT, attached(blob(BIG // 2, seed=15)), boundary="f")
                        )
                    ),
                    cte="base64",
                ),
            )
        ),
        True,
        [False],
    ),
    (
        "the attached message is quoted-printable, its attachment's lines too",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD + mixed(TEXT, attached(blob(seed=16)), boundary="f"),
                    cte="quoted-printable",
                ),
            )
        ),
        True,
        [False, True],
    ),
    (
        "the attached message is a multipart without a boundary: left to the full parse",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + "Content-Type: multipart/mixed\nContent-Transfer-Encoding: base64\n\n"
                    + b64(blob(seed=17))
                ),
            )
        ),
        False,
        [False],
    ),
    (
        "the attached message's closing boundary is missing",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + mixed(TEXT, attached(blob(seed=18)), boundary="f").rsplit("--f--")[0]
                ),
            )
        ),
        True,
        [False, True],
    ),
    (
        "a run in the attached message's preamble: left to the full parse",
        lambda: crlf(
            HEAD
            + mixed(
                TEXT,
                forward(
                    INNER_HEAD
                    + 'Content-Type: multipart/mixed; boundary="f"\n\n'
                    + b64(blob(seed=19))
                    + "\n"
                    + mixed(TEXT, attached(blob(900, seed=20)), boundary="f").split("\n\n", 1)[1]
                ),
            )
        ),
        False,
        [False, False],
    ),
]


@pytest.mark.parametrize(
    ("make", "cut", "expected"),
    [case[1:] for case in FORWARD_CASES],
    ids=[case[0] for case in FORWARD_CASES],
)
def test_attached_messages_parse_as_the_full_parse(
    make: Callable[[], bytes], cut: bool, expected: list[bool]
) -> None:
    parsed = check(make(), cut, expected)
    assert parsed.forwarded_parts  # compared byte for byte by assert_same


def test_forwarded_bytes_are_put_back_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "CHUNK", 1001)  # pieces that end mid-line are never cut
    for line_end in ("\n", "\r\n"):
        inner = INNER_HEAD + mixed(TEXT, attached(blob(seed=21)), boundary="f")
        raw = (HEAD + mixed(TEXT, forward(inner))).replace("\n", line_end).encode()
        check(raw, True, [False, True])


def test_restore_generated_without_placeholders_is_the_same_object() -> None:
    raw = crlf(HEAD + mixed(TEXT, attached(blob(seed=22))))
    cut = cut_runs(raw)
    assert cut is not None
    content = b"From: a@b.test\r\n\r\nno runs here\r\n"
    assert restore_generated(content, cut) is content


def test_a_forward_unwraps_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from capture_server.pipeline.message import Kind
    from tests.pipeline.helpers import run

    inner = INNER_HEAD.replace("Rita Rep <rita@acme.test>", "Carl <carl@globex.test>")
    raw = crlf(
        HEAD + mixed(TEXT, forward(inner + mixed(TEXT, attached(blob(seed=23)), boundary="f")))
    )
    fast = run(raw, Kind.FORWARD)
    monkeypatch.setattr(parse, "cut_runs", lambda raw, minimum: None)
    full = run(raw, Kind.FORWARD)
    assert (fast.action, fast.reason) == (full.action, full.reason)
    assert fast.draft == full.draft
    assert fast.draft is None or fast.draft.as_dict() == full.draft.as_dict()  # type: ignore[union-attr]


# -- shape 2: a big base64 text body --------------------------------------------------------


def spy_text_content(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the text bodies decoded from the received bytes."""
    calls: list[int] = []
    real = parse._text_content

    def spy(*args: object) -> tuple[str, int]:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(parse, "_text_content", spy)
    return calls


TEXT_CASES: list[tuple[str, Callable[[], bytes], bool]] = [
    ("plain utf-8, crlf", lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode()))), True),
    ("plain utf-8, lf", lambda: (HEAD + mixed(text_part(prose(BIG).encode()))).encode(), True),
    (
        "single-part message",
        lambda: crlf(
            HEAD
            + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: BASE64\n\n"
            + b64(prose(BIG).encode())
        ),
        True,
    ),
    (
        "trailing and leading whitespace, ascii and not",
        lambda: crlf(
            HEAD
            + mixed(
                text_part(
                    (
                        "\u00a0 \t\n"
                        + prose(BIG)
                        + " \t\x0b\x0c\x1c\x1d\x1e\x1f\r\n\u00a0\u2003 \n"
                    ).encode()
                )
            )
        ),
        True,
    ),
    (
        "more trailing whitespace than one step",
        lambda: crlf(HEAD + mixed(text_part((prose(BIG) + " \n" * 5000).encode()))),
        True,
    ),
    ("nothing but whitespace", lambda: crlf(HEAD + mixed(text_part(b" \r\n\t" * BIG))), True),
    (
        "a broken UTF-8 sequence before the trailing whitespace",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode() + b"\xe2\x82 \n\n"))),
        True,
    ),
    (
        "NUL bytes in the text",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode() + b"\x00 end\x00\n"))),
        True,
    ),
    (
        "us-ascii with 8-bit bytes",
        lambda: crlf(
            HEAD
            + mixed(
                text_part(prose(BIG).encode() + b"\xff\n", charset="us-ascii"), attached(blob(100))
            )
        ),
        True,
    ),
    (
        "no charset (ASCII)",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode(), charset=None))),
        True,
    ),
    (
        "latin-1",
        lambda: crlf(
            HEAD + mixed(text_part(prose(BIG).encode("latin-1", "replace"), charset="latin-1"))
        ),
        True,
    ),
    (
        "utf-16",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode("utf-16"), charset="utf-16"))),
        True,
    ),
    (
        "an unknown charset (a defect, then UTF-8)",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode(), charset="x-nowhere"))),
        True,
    ),
    (
        "html",
        lambda: crlf(
            HEAD
            + mixed(
                text_part(
                    (
                        "<html><body><p>"
                        + prose(BIG).replace("\n", "</p><p>")
                        + "</p></body></html>\n"
                    ).encode(),
                    "html",
                )
            )
        ),
        True,
    ),
    (
        "alternative: plain and html, both base64",
        lambda: crlf(
            HEAD
            + 'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\n'
            + text_part(prose(BIG, seed=2).encode())
            + "\n--alt\n"
            + text_part(("<p>" + prose(BIG, seed=3) + "</p>").encode(), "html")
            + "\n--alt--\n"
        ),
        True,
    ),
    (
        "text body and a big attachment",
        lambda: crlf(HEAD + mixed(text_part(prose(BIG).encode()), attached(blob(seed=24)))),
        True,
    ),
]


@pytest.mark.parametrize(
    ("make", "decoded"), [case[1:] for case in TEXT_CASES], ids=[case[0] for case in TEXT_CASES]
)
def test_base64_text_bodies_parse_as_the_full_parse(
    make: Callable[[], bytes], decoded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make()
    calls = spy_text_content(monkeypatch)
    check(raw, True)
    assert bool(calls) is decoded


def padded() -> bytes:
    """Text whose base64 ends in "==": one byte over a multiple of three."""
    text = prose(BIG).encode()
    return text[: len(text) - len(text) % 3 - 2]


@pytest.mark.parametrize(
    "text",
    [b64(padded()).rstrip("="), b64(padded()) + "\n" + b64(b"more text")],
    ids=["missing padding", "padding in the middle"],
)
def test_a_body_that_is_not_strict_base64_is_restored(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "=" in b64(padded())
    raw = crlf(
        HEAD
        + mixed(
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + text
        )
    )
    calls = spy_text_content(monkeypatch)
    check(raw, True)
    assert not calls  # decoded by the email package, from the text put back


def test_a_body_under_another_content_manager_is_left_to_the_full_parse() -> None:
    raw = crlf(HEAD + mixed(text_part(prose(BIG).encode())))
    cut = cut_runs(raw)
    assert cut is not None
    message = parse_bytes(cut.skeleton)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and parse._standard_text_content(body)
    body.policy = body.policy.clone(content_manager=ContentManager())  # type: ignore[call-arg]
    assert not parse._standard_text_content(body)


def test_the_body_is_decoded_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "CHUNK", 4099)
    raw = crlf(HEAD + mixed(text_part(prose(BIG).encode() + "€\n".encode())))
    calls = spy_text_content(monkeypatch)
    check(raw, True)
    assert calls


# -- both, generated at random --------------------------------------------------------------


def random_message(seed: int) -> bytes:
    """Small messages (cut with a small minimum) mixing every shape and edge."""
    rnd = random.Random(seed)

    def data() -> bytes:
        return rnd.randbytes(rnd.choice([0, 1, 2, 3, 50, 700, 3000]))

    def encoded(raw: bytes) -> str:
        text = b64(raw, rnd.choice([76, 64, 4, 72]))
        return rnd.choice([text, text, text.rstrip("="), text + "\n" + b64(b"xy"), text + "\n!"])

    def leaf(depth: int) -> str:
        kind = rnd.randrange(6)
        if kind == 0:
            return text_part(prose(rnd.choice([10, 900, 3000]), seed).encode())
        if kind == 1 and depth < 3:
            return forward(INNER_HEAD + node(depth + 1), rnd.choice(["", "", "base64", "7bit"]))
        if kind == 2:
            return TEXT
        return attached(encoded(data()), cte=rnd.choice(["base64", "base64", "7bit"]))

    def node(depth: int) -> str:
        if depth >= 3 or rnd.random() < 0.3:
            return leaf(depth)
        parts = [node(depth + 1) for _ in range(rnd.randint(1, 3))]
        return mixed(*parts, boundary=f"b{depth}{rnd.randrange(1000)}")

    text = HEAD + node(0)
    line_end = rnd.choice(["\n", "\r\n", "mixed"])
    if line_end == "mixed":
        return "".join(line + rnd.choice(["\n", "\r\n"]) for line in text.split("\n")).encode()
    return text.replace("\n", line_end).encode()


@pytest.mark.parametrize("seed", range(60))
def test_random_messages_parse_as_the_full_parse(seed: int) -> None:
    raw = random_message(seed)
    for minimum in (64, 1024):
        assert_same(raw, minimum)


NOTE = "Content-Type: text/plain\n\nHi Carl, see the original below."  # no line to cut


def forwarded_fixture(path: Path, line_end: bytes = b"\r\n") -> bytes:
    return (
        crlf(HEAD + 'Content-Type: multipart/mixed; boundary="mix"\n\n--mix\n' + NOTE)
        + b"\r\n--mix\r\nContent-Type: message/rfc822\r\n\r\n"
        + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", line_end)
        + b"\r\n--mix--\r\n"
    )


@pytest.mark.parametrize("path", sorted(DATA.glob("*.eml")), ids=lambda p: p.name)
@pytest.mark.parametrize("cut_minimum", [1, 64])
def test_every_fixture_forwarded_as_an_attachment_parses_as_the_full_parse(
    path: Path, cut_minimum: int
) -> None:
    # A tiny minimum cuts most lines of the attached message: its bytes are put back from them.
    for line_end in (b"\n", b"\r\n"):
        assert_same(forwarded_fixture(path, line_end), cut_minimum)


def test_most_forwarded_fixtures_take_the_cut_parse() -> None:
    paths = sorted(DATA.glob("*.eml"))
    taken = [path.name for path in paths if took_cut(forwarded_fixture(path), 1)]
    assert len(taken) > len(paths) // 2
