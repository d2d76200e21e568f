"""Which codec decodes text declared in a charset, and the decoding with its fallbacks.

Mail declares charsets loosely: "iso-8859-1" text is most often windows-1252 (curly quotes,
the euro sign), "gb2312" text GBK, "shift_jis" text Microsoft's cp932. Browsers read these
labels as the supersets (WHATWG Encoding Standard); so does codec_for. Text with no charset,
or one no codec knows, is read as UTF-8 if it is valid UTF-8, else as windows-1252.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

# Labels Python's codecs do not know (WHATWG labels and mail's own), by lowered label.
_LABELS = {
    "x-cp1252": "cp1252",
    "iso88591": "cp1252",
    "x-gbk": "gb18030",
    "windows-949": "cp949",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "x-ms-cp932": "cp932",
    "macintosh": "mac_roman",
    "x-mac-roman": "mac_roman",
    "mac": "mac_roman",
    "csmacintosh": "mac_roman",
    "cn-big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "windows-874": "cp874",
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-6-e": "iso8859-6",
    "csiso88596i": "iso8859-6",
    "csiso88596e": "iso8859-6",
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-8-e": "iso8859-8",
    "csiso88598i": "iso8859-8",
    "csiso88598e": "iso8859-8",
    "logical": "iso8859-8",
    "visual": "iso8859-8",
    "unicode-1-1-utf-8": "utf-8",
    "unicode11utf8": "utf-8",
    "unicode20utf8": "utf-8",
    "x-unicode20utf8": "utf-8",
}
# Python's codec (by its canonical name) → the superset the label means (WHATWG).
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
# Codecs that are no character set a message could be written in.
_REFUSED = {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape"}
_ISO8859_RUN = re.compile(r"iso8859(\d+)")  # WHATWG's "iso88592" and the like
# Every ASCII byte, then the shifts of the 7-bit stateful codecs (ISO-2022, HZ, UTF-7).
_ASCII = bytes(range(128)) + b"\x1b$B!!\x1b(B \x1b$)C\x0e!!\x0f ~{!!~} +AGE-"
# <meta charset=...> or <meta http-equiv=content-type content="text/html; charset=...">
_META_CHARSET = re.compile(
    rb"<meta\b[^>]*?\bcharset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE
)
HTML_SNIFF_BYTES = 1024


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The codec to decode text declared in label with (case-insensitive, spaces and quotes
    around it ignored); None for no label, or one no codec knows."""
    if not isinstance(label, str):
        return None
    name = label.strip().strip("\"'").strip().lower()
    if not name or not name.isascii():
        return None
    name = _LABELS.get(name, name)
    numbered = _ISO8859_RUN.fullmatch(name)
    if numbered:
        name = f"iso8859-{numbered[1]}"
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not info._is_text_encoding or info.name in _REFUSED:
        return None
    return codecs.lookup(_SUPERSETS.get(info.name, info.name)).name


@lru_cache(maxsize=64)
def ascii_compatible(codec: str) -> bool:
    """Whether the codec reads every ASCII byte as that character, whatever surrounds it
    (ASCII text then decodes as ASCII, and trailing ASCII as itself)."""
    try:
        return _ASCII.decode(codec) == _ASCII.decode("ascii")
    except (UnicodeDecodeError, LookupError):
        return False


def decode(data: bytes, label: str | None, end: int | None = None) -> str:
    """data[:end] (without a copy) read as text declared in label (see decode_as)."""
    return decode_as(data, codec_for(label), end)


def decode_as(data: bytes, codec: str | None, end: int | None = None) -> str:
    """data[:end] (without a copy) as text in codec, bytes it cannot read as U+FFFD; with no
    codec, strict UTF-8, else windows-1252. ASCII comes through UTF-8's fast decoder."""
    text: bytes | memoryview = data if end is None or end >= len(data) else memoryview(data)[:end]
    if data.isascii() and (codec is None or ascii_compatible(codec)):
        return str(text, "utf-8")
    if codec is None:
        try:
            return str(text, "utf-8")
        except UnicodeDecodeError:
            return str(text, "cp1252", "replace")
    return str(text, codec, "replace")


def html_codec(head: bytes) -> str | None:
    """The codec a <meta> tag in head (the first HTML_SNIFF_BYTES of an HTML text) declares;
    a UTF-16 or UTF-32 declaration means UTF-8 (the tag was read as ASCII: WHATWG)."""
    found = _META_CHARSET.search(head[:HTML_SNIFF_BYTES])
    codec = codec_for(found[1].decode("ascii")) if found else None
    if codec is None or codec.startswith(("utf-16", "utf-32")):
        return "utf-8" if codec else None
    return codec if ascii_compatible(codec) else None


def body_codec(label: str | None, content: bytes, html: bool) -> str | None:
    """The codec for a text body declared in label (a Content-Type charset); for an HTML body
    whose label names no codec, the one its <meta> tag declares."""
    codec = codec_for(label)
    if codec is None and html:
        return html_codec(content[:HTML_SNIFF_BYTES])
    return codec


def unknown(label: str | None) -> bool:
    """Whether label is a declared charset no codec reads ("unknown-8bit" says so itself)."""
    return bool(label and label.strip()) and codec_for(label) is None and label != "unknown-8bit"


def header_value(value: str) -> str:
    """A raw header value (policy.default keeps raw 8-bit bytes as surrogateescapes) ready for
    the email package to parse: its raw bytes read as text (unescaped) and its encoded words
    relabelled, so that both decode as the body text does (the email package reads raw bytes
    as UTF-8 or U+FFFD, and takes charset labels as Python's codecs)."""
    if not value.isascii():
        value = unescaped(value)
    return relabelled(value)


# An RFC 2047 encoded word's start: =?charset*language?encoding?
_ENCODED_WORD = re.compile(r"=\?([^?*\s]+)((?:\*[^?\s]*)?\?[bBqQ]\?)")


def relabelled(value: str) -> str:
    """value with each encoded word's charset named by the codec codec_for gives it, so that
    the email package decodes it so; labels no codec reads are left as they are."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_relabel, value)


def _relabel(word: re.Match[str]) -> str:
    codec = codec_for(word[1])
    return word[0] if codec is None else f"=?{codec}{word[2]}"


# A run of raw bytes an ASCII (surrogateescape) reading kept as lone surrogates.
_ESCAPED = re.compile("[\udc80-\udcff]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unescaped(value: str) -> str:
    """value with its surrogateescape'd raw bytes read as text: as UTF-8 where the whole
    value is UTF-8, else each run of them as UTF-8 or windows-1252 (decode_as); any other
    surrogate becomes U+FFFD."""
    if not _SURROGATE.search(value):
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        pass
    value = _ESCAPED.sub(
        lambda run: decode_as(run[0].encode("utf-8", "surrogateescape"), None), value
    )
    return _SURROGATE.sub("\ufffd", value)
