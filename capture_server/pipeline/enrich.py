"""Stages: private messages, deal references and admin-defined extractors.

Every pattern here sees message text, so it is google-re2 (linear time), compiled once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from capture_server.pipeline.message import Action, Decision, Reason, Work

PRIVATE_STAGE = "private"
ENRICH_STAGE = "enrich"
PRIVATE_HEADER = "x-capture-private"
_YES = frozenset({"yes", "true", "1", "on"})
MAX_PATTERN_CHARS = 500
MAX_VALUES = 20  # per extractor and message: a pattern matching everything stays small
MAX_VALUE_CHARS = 200
MAX_TEXT_CHARS = 256 * 1024  # of the body scanned: linear time, but bounded memory too


class PatternError(ValueError):
    """A pattern an admin gave does not compile with re2 (or has the wrong groups)."""


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # re2 would print to stderr; the caller says what went wrong
    options.case_sensitive = False
    options.max_mem = 8 << 20
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise PatternError(f"pattern {pattern!r} does not compile with re2: {detail}") from None


def check_pattern(pattern: str, groups: int = 0) -> Any:
    """The compiled pattern; PatternError when too long, invalid or with too few groups."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern has 1 to {MAX_PATTERN_CHARS} characters")
    compiled = _compiled(pattern)
    if compiled.groups < groups:
        raise PatternError(f"pattern {pattern!r} needs a capture group, e.g. (\\d+)")
    return compiled


def _first_group(match: Any) -> str:
    """The first group that took part in the match; the whole match when there is none."""
    for index in range(1, match.re.groups + 1):
        value = match.group(index)
        if value:
            return str(value)
    return str(match.group(0))


def find_values(pattern: str, texts: tuple[str, ...]) -> tuple[str, ...]:
    compiled = check_pattern(pattern)
    found: dict[str, None] = {}
    for text in texts:
        for match in compiled.finditer(text[:MAX_TEXT_CHARS]):
            value = _first_group(match).strip()[:MAX_VALUE_CHARS]
            if value:
                found.setdefault(value)
            if len(found) >= MAX_VALUES:
                return tuple(found)
    return tuple(found)


def private_marker(work: Work) -> str | None:
    """Why the rep marked this message private, or None."""
    assert work.parsed is not None
    header = (work.parsed.header(PRIVATE_HEADER) or "").strip().lower()
    if header in _YES:
        return f"X-Capture-Private: {header}"
    # The received subject (a forward's own) and the one that would be logged.
    subjects = {work.parsed.email.subject.lower()}
    if work.email is not None:
        subjects.add(work.email.subject.lower())
    for tag in sorted(work.snapshot.rules.private_subject_tags):
        if tag.strip() and any(tag.strip().lower() in subject for subject in subjects):
            return f"subject tag {tag.strip()!r}"
    return None


def private_stage(work: Work) -> Work | Decision:
    marker = private_marker(work)
    if marker is not None:
        # The detail names the marker only: nothing of a private message is recorded.
        detail = f"marked private: {marker}"
        return work.decide(PRIVATE_STAGE, Action.IGNORE, Reason.PRIVATE, detail)
    return work.advance(PRIVATE_STAGE, "pass", "not marked private")


def enrich_stage(work: Work) -> Work:
    """Deal references and extractor values from the subject and body that will be logged."""
    assert work.email is not None
    texts = (work.email.subject, work.email.body_text)
    deals: dict[int, None] = {}
    for pattern in work.snapshot.rules.deal_reference_patterns:
        for value in find_values(pattern, texts):
            if value.isdigit() and len(value) < 18:
                deals.setdefault(int(value))
    extracted: dict[str, tuple[str, ...]] = {}
    for extractor in work.snapshot.extractors:
        try:
            values = find_values(extractor.pattern, texts)
        except PatternError:
            continue  # refused when added; a pattern stored otherwise must not stop capture
        if values:
            extracted[extractor.name] = values
    parts = []
    if deals:
        parts.append("deal reference(s) " + ", ".join(str(d) for d in deals))
    if extracted:
        parts.append(
            "extracted " + ", ".join(f"{name} ({len(v)})" for name, v in extracted.items())
        )
    detail = "; ".join(parts) or "no references"
    return work.advance(
        ENRICH_STAGE, "pass", detail, referenced_deals=tuple(deals), extracted=extracted
    )
