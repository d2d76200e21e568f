"""The feed parser's multipart boundary test without a regular-expression compile per part.

For every multipart part it meets, `email.feedparser` compiles an expression from the part's
boundary: ``(?P<sep>ESCAPED)(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>\\r\\n|\\r|\\n)?$``.
Boundaries are unique per message, so `re`'s cache never hits, and sre compiles in Python:
~275 µs a boundary, about 3 % of the daemon's CPU on a 10 kB multipart/alternative message
(bench/, py-spy). `install()` gives `email.feedparser` an `re` whose `compile` returns, for
exactly that expression, a matcher written with str methods that answers as the compiled
expression does (tests/pipeline/test_email_boundary.py compares them on generated lines);
every other call goes to `re` itself.
"""

from __future__ import annotations

import email.feedparser
import re
from typing import Any

_PREFIX = "(?P<sep>"
_SUFFIX = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_NAMES = ("sep", "end", "ws", "linesep")


class BoundaryMatch:
    """The part of re.Match the feed parser reads: group()."""

    __slots__ = ("_groups", "_whole")

    def __init__(self, whole: str, groups: tuple[str, str | None, str, str | None]) -> None:
        self._whole = whole
        self._groups = groups

    def group(self, name: int | str = 0) -> str | None:
        if name == 0:
            return self._whole
        return self._groups[_NAMES.index(name) if isinstance(name, str) else name - 1]


class BoundaryMatcher:
    """`re.compile(_PREFIX + re.escape(separator) + _SUFFIX).match`, with str methods."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> BoundaryMatch | None:
        separator = self.separator
        if not line.startswith(separator):
            return None
        position = len(separator)
        # "--" right after the separator is always taken: without it, "-" fails at once.
        end = "--" if line.startswith("--", position) else None
        if end:
            position += 2
        spaces = len(line) - position - len(line[position:].lstrip(" \t"))
        ws = line[position : position + spaces]
        rest = line[position + spaces :]
        # (?P<linesep>...)?$ : `$` is the end, or just before a newline that ends the line.
        for linesep in ("\r\n", "\r", "\n", None):
            after = rest[len(linesep) :] if linesep and rest.startswith(linesep) else None
            if linesep is None:
                after = rest
            if after in ("", "\n"):
                whole = line[: len(line) - len(after)]
                return BoundaryMatch(whole, (separator, end, ws, linesep))
        return None


class _FeedParserRe:
    """`re` for email.feedparser: the boundary expression made by BoundaryMatcher."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        if (
            isinstance(pattern, str)
            and not flags
            and pattern.startswith(_PREFIX)
            and pattern.endswith(_SUFFIX)
        ):
            escaped = pattern[len(_PREFIX) : -len(_SUFFIX)]
            separator = re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL)
            if re.escape(separator) == escaped:  # exactly what re.escape made: no surprises
                return BoundaryMatcher(separator)
        return re.compile(pattern, flags)


def install() -> None:
    """Once per process (idempotent); parsing after it uses BoundaryMatcher."""
    if not isinstance(getattr(email.feedparser, "re", None), _FeedParserRe):
        email.feedparser.re = _FeedParserRe()  # type: ignore[attr-defined]
