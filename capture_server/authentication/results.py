"""Authentication results: the data model, the RFC 8601 header, and a parser for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "RESULT_VALUES",
    "AuthenticationResults",
    "MethodResult",
    "ParsedAuthResults",
    "parse_authentication_results",
]

RESULT_VALUES = frozenset(
    {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
)

# RFC 8601 ptype.property used for each method's domain.
_DOMAIN_PROPERTY = {
    "dkim": "header.d",
    "dmarc": "header.from",
}
_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+$")
_MAX_HEADER = 8192
_MAX_METHODS = 32


def _value(text: str) -> str:
    """A header-safe value: a token when possible, else a quoted-string."""
    clean = "".join(ch for ch in text if " " <= ch <= "~")
    if clean and _TOKEN_RE.match(clean):
        return clean
    escaped = clean.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _comment(text: str) -> str:
    clean = "".join(ch for ch in text if " " <= ch <= "~" and ch not in "()\\")
    return clean.strip()[:200]


@dataclass(frozen=True)
class MethodResult:
    """One method's result, i.e. one ``method=result`` clause of Authentication-Results."""

    method: str
    result: str
    domain: str | None
    detail: str
    selector: str | None = None
    # spf only: "mailfrom" or "helo", the identity that was checked.
    identity: str | None = None

    def to_clause(self) -> str:
        parts = [f"{self.method}={self.result}"]
        detail = _comment(self.detail)
        if detail:
            parts.append(f"({detail})")
        if self.domain and self.method != "arc":  # arc: the sealer is named in the comment
            if self.method == "spf":
                prop = "smtp.helo" if self.identity == "helo" else "smtp.mailfrom"
            else:
                prop = _DOMAIN_PROPERTY.get(self.method, "header.d")
            parts.append(f"{prop}={_value(self.domain)}")
        if self.selector:
            parts.append(f"header.s={_value(self.selector)}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": self.method,
            "result": self.result,
            "domain": self.domain,
            "detail": self.detail,
        }
        if self.selector is not None:
            out["selector"] = self.selector
        if self.identity is not None:
            out["identity"] = self.identity
        return out


@dataclass(frozen=True)
class AuthenticationResults:
    """What the message proved about its origin.

    ``from_address``/``from_domain`` come from our own parse of the single ``From:``
    header (email.policy.default), never from a display name: attribution must use them.
    """

    authserv_id: str
    methods: tuple[MethodResult, ...]
    from_domain: str | None
    dmarc_policy: str | None
    aligned: bool
    temporary_error: bool
    source: str
    from_address: str | None = None
    notes: tuple[str, ...] = field(default=())

    def method(self, name: str) -> tuple[MethodResult, ...]:
        """Every result of one method (``dkim`` may have several)."""
        return tuple(m for m in self.methods if m.method == name)

    def to_header(self) -> str:
        """The RFC 8601 Authentication-Results field value (without the field name)."""
        authserv = _value(self.authserv_id or "localhost")
        if not self.methods:
            return f"{authserv}; none"
        return "; ".join([authserv, *(m.to_clause() for m in self.methods)])

    def as_dict(self) -> dict[str, object]:
        return {
            "authserv_id": self.authserv_id,
            "source": self.source,
            "from_address": self.from_address,
            "from_domain": self.from_domain,
            "dmarc_policy": self.dmarc_policy,
            "aligned": self.aligned,
            "temporary_error": self.temporary_error,
            "methods": [m.as_dict() for m in self.methods],
            "notes": list(self.notes),
            "header": self.to_header(),
        }


# --------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class ParsedClause:
    method: str
    result: str
    reason: str
    properties: tuple[tuple[str, str], ...]
    comments: tuple[str, ...]

    def prop(self, *names: str) -> str | None:
        for want in names:
            for key, value in self.properties:
                if key == want:
                    return value
        return None


@dataclass(frozen=True)
class ParsedAuthResults:
    authserv_id: str
    clauses: tuple[ParsedClause, ...]


def _lex(value: str) -> list[tuple[str, str]] | None:
    """Tokens of an A-R value: ("word", text), ("quoted", text), (";", ""), ("=", ""),
    ("comment", text).  Linear in the input; None when malformed."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == ";":
            tokens.append((";", ""))
            i += 1
        elif ch == "=":
            tokens.append(("=", ""))
            i += 1
        elif ch == '"':
            i += 1
            buf: list[str] = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            if i >= n:
                return None
            i += 1
            tokens.append(("quoted", "".join(buf)))
        elif ch == "(":
            depth = 0
            buf = []
            while i < n:
                c = value[i]
                if c == "\\" and i + 1 < n:
                    buf.append(value[i + 1])
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                    if depth > 1:
                        buf.append(c)
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                    buf.append(c)
                else:
                    buf.append(c)
                i += 1
            if depth != 0:
                return None
            tokens.append(("comment", "".join(buf)))
        else:
            start = i
            while i < n and value[i] not in ' \t\r\n;="(':
                i += 1
            tokens.append(("word", value[start:i]))
    return tokens


def parse_authentication_results(value: str) -> ParsedAuthResults | None:
    """Parse an Authentication-Results value (RFC 8601).  None when it is not one.

    Never raises; bounded by ``_MAX_HEADER`` characters and ``_MAX_METHODS`` clauses.
    """
    if len(value) > _MAX_HEADER:
        return None
    tokens = _lex(value)
    if not tokens:
        return None
    segments: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok[0] == ";":
            segments.append([])
        else:
            segments[-1].append(tok)
    head = [t for t in segments[0] if t[0] != "comment"]
    if not head or head[0][0] not in ("word", "quoted"):
        return None
    authserv_id = head[0][1].lower()
    clauses: list[ParsedClause] = []
    for seg in segments[1:][:_MAX_METHODS]:
        comments = tuple(t[1] for t in seg if t[0] == "comment")
        toks = [t for t in seg if t[0] != "comment"]
        if not toks:
            continue
        if len(toks) == 1 and toks[0] == ("word", "none"):
            continue
        if len(toks) < 3 or toks[0][0] != "word" or toks[1][0] != "=":
            return None
        method = toks[0][1].split("/", 1)[0].lower()
        if toks[2][0] not in ("word", "quoted"):
            return None
        result = toks[2][1].lower()
        reason = ""
        props: list[tuple[str, str]] = []
        j = 3
        while j < len(toks):
            if j + 2 >= len(toks):
                return None
            key, eq, val = toks[j], toks[j + 1], toks[j + 2]
            if key[0] != "word" or eq[0] != "=" or val[0] not in ("word", "quoted"):
                return None
            name = key[1].lower()
            if name == "reason":
                reason = val[1]
            else:
                props.append((name, val[1]))
            j += 3
        clauses.append(ParsedClause(method, result, reason, tuple(props), comments))
    return ParsedAuthResults(authserv_id, tuple(clauses))
