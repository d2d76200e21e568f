"""Best-effort parsing of the dates mail clients print in forwarded headers."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone
from typing import Any

import re2

from capture_server.forwarding.tables import (
    AM_MARKERS,
    LANGUAGES,
    PM_MARKERS,
    ZONE_OFFSETS,
)

MAX_DATE_CHARS = 200


def _build_months() -> dict[str, int]:
    months: dict[str, int] = {}
    for lang in LANGUAGES:
        for stem, number in lang.months.items():
            months.setdefault(stem.casefold(), number)
    return months


_MONTHS = _build_months()
# Longest stems first: "marras" (fi, November) before "mar" (March).
_MONTH_STEMS = sorted(_MONTHS, key=len, reverse=True)

_TIME = re2.compile(
    r"(?P<h>\d{1,2})[:.](?P<m>\d{2})(?:[:.](?P<s>\d{2}))?(?:\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?"
)
# d.m.yyyy, d/m/yyyy, yyyy-m-d, and d/m/yy (a two-digit year only with slashes: 09.26.50
# is a time).
_NUMERIC_DATE = re2.compile(
    r"(?P<a>\d{1,4})\s*[./-]\s*(?P<b>\d{1,2})\s*[./-]\s*(?P<c>\d{4})"
    r"|(?P<a2>\d{1,2})/(?P<b2>\d{1,2})/(?P<c2>\d{2})\b"
)
_CJK_DATE = re2.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日")
_OFFSET = re2.compile(r"(?:(?:GMT|UTC)\s*)?(?P<sign>[+-])(?P<hh>\d{1,2})(?::?(?P<mm>\d{2}))?\b")
_TOKEN = re2.compile(r"\d+|\pL+")


def _month_of(word: str) -> int | None:
    if len(word) < 3:
        return None
    folded = word.casefold()
    for stem in _MONTH_STEMS:
        if folded.startswith(stem):
            return _MONTHS[stem]
    return None


def _zone(text: str, after: int) -> timezone | None:
    tail = text[after:]
    m: Any = _OFFSET.search(tail)
    if m is not None:
        sign = -1 if m.group("sign") == "-" else 1
        hours = int(m.group("hh"))
        minutes = int(m.group("mm") or 0)
        if hours <= 14 and minutes < 60:
            return timezone(sign * timedelta(hours=hours, minutes=minutes))
    for tok in _TOKEN.findall(tail):
        offset = ZONE_OFFSETS.get(tok.casefold())
        if offset is not None:
            return timezone(timedelta(minutes=offset))
    return None


def _build(year: int, month: int, day: int, text: str) -> datetime | None:
    if year < 100:
        year += 2000 if year < 70 else 1900
    hour = minute = second = 0
    zone: timezone | None = None
    m: Any = _TIME.search(text)
    if m is not None:
        hour, minute = int(m.group("h")), int(m.group("m"))
        second = int(m.group("s") or 0)
        ampm = (m.group("ampm") or "").replace(" ", "").casefold()
        if not ampm:
            lowered = text.casefold()
            if any(marker in lowered for marker in PM_MARKERS):
                ampm = "pm"
            elif any(marker in lowered for marker in AM_MARKERS):
                ampm = "am"
        if ampm.startswith("p") and hour < 12:
            hour += 12
        elif ampm.startswith("a") and hour == 12:
            hour = 0
        zone = _zone(text, m.end())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None


def _latest_not_after(
    reference: datetime, default: datetime | None, other: datetime | None
) -> datetime | None:
    """Of the two readings of an ambiguous numeric date (5/11 as 5 Nov or 11 May), the latest
    that is not after the reference (the forward: its original was written before it, give or
    take a day of time zones); the default reading when neither fits."""
    limit = reference.replace(tzinfo=None) + timedelta(days=1)
    fitting = [c for c in (default, other) if c is not None and c.replace(tzinfo=None) <= limit]
    return max(fitting, key=lambda c: c.replace(tzinfo=None)) if fitting else default


def parse_printed_date(s: str, reference: datetime | None = None) -> datetime | None:
    """Parse a date as a mail client printed it; ``None`` when unsure.

    Understands RFC 2822, ISO 8601 and the printed forms of the common clients in the
    languages of :mod:`capture_server.forwarding.tables` ("Mon, Oct 28, 2021 at 12:46 PM",
    "28. okt. 2021 kl. 12.46", "le 28 oct. 2021 à 12:46", "2021. október 26. 14:25",
    "28/10/2021 12:46", "2022年9月19日 17:55").  Naive when no zone is printed.
    All-numeric dates are read day-first unless a 12-hour clock is printed (US style); with
    a reference (when the forward was sent), one that reads both ways is the reading that is
    latest but not after it (Samsung's US "11/5/26 16:45" in a forward of 6 Nov: 5 Nov).
    """
    text = " ".join(s[:MAX_DATE_CHARS].split())
    if not text:
        return None
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    if "," in text[:5] or text[:1].isdigit():
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None:
            return parsed
    cjk: Any = _CJK_DATE.search(text)
    if cjk is not None:
        return _build(int(cjk.group("y")), int(cjk.group("m")), int(cjk.group("d")), text)
    numeric: Any = _NUMERIC_DATE.search(text)
    if numeric is not None:
        if numeric.group("a") is not None:
            raw_a, raw_b, raw_c = numeric.group("a"), numeric.group("b"), numeric.group("c")
        else:
            raw_a, raw_b, raw_c = numeric.group("a2"), numeric.group("b2"), numeric.group("c2")
        a, b, c = int(raw_a), int(raw_b), int(raw_c)
        rest = text[: numeric.start()] + " " + text[numeric.end() :]
        if len(raw_a) == 4:
            year, month, day = a, b, c
        else:
            year = c
            twelve_hour = any(m in rest.casefold() for m in ("am", "pm", "a.m.", "p.m."))
            if a > 12 or (b <= 12 and not twelve_hour):
                day, month = a, b
            else:
                month, day = a, b
            if reference is not None and a != b and a <= 12 and b <= 12 and not twelve_hour:
                return _latest_not_after(
                    reference, _build(year, month, day, rest), _build(year, day, month, rest)
                )
        return _build(year, month, day, rest)
    # Words: a month name, a day number and a four-digit year.
    time_match: Any = _TIME.search(text)
    head = text[: time_match.start()] if time_match is not None else text
    word_month: int | None = None
    word_year: int | None = None
    numbers: list[int] = []
    for tok in _TOKEN.findall(head):
        if tok.isdigit():
            if len(tok) == 4:
                word_year = int(tok)
            elif len(tok) <= 2:
                numbers.append(int(tok))
        elif word_month is None:
            word_month = _month_of(tok)
    days = [n for n in numbers if 1 <= n <= 31]
    if word_month is None or word_year is None or not days:
        return None
    return _build(word_year, word_month, days[0], text)
