"""Organisational domain (RFC 7489 section 3.2) from the Public Suffix List.

No network fetch ever happens.  The list is read, once, from the first of:

1. the file named by the ``CAPTURE_SERVER_PUBLIC_SUFFIX_LIST`` environment variable;
2. the snapshot bundled with the ``publicsuffixlist`` package, when it is installed;
3. the operating system's copy (Debian/Ubuntu package ``publicsuffix``:
   ``/usr/share/publicsuffix/public_suffix_list.dat``);
4. a small built-in list of the most common suffixes (last resort, logged in
   :func:`list_source`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PublicSuffixList", "default_list", "list_source", "organizational_domain"]

_SYSTEM_PATHS = (
    "/usr/share/publicsuffix/public_suffix_list.dat",
    "/usr/local/share/publicsuffix/public_suffix_list.dat",
    "/etc/ssl/public_suffix_list.dat",
)

# A last-resort subset: generic TLDs are covered by the implicit "*" rule.
_BUILTIN = """
ac.uk co.uk gov.uk ltd.uk me.uk net.uk org.uk plc.uk sch.uk nhs.uk police.uk
com.au net.au org.au edu.au gov.au asn.au id.au
co.nz net.nz org.nz govt.nz ac.nz
co.jp ne.jp or.jp ac.jp go.jp
com.br net.br org.br gov.br
com.cn net.cn org.cn gov.cn edu.cn
co.in net.in org.in firm.in gen.in ind.in
co.za org.za gov.za
com.mx org.mx gob.mx
com.tr org.tr
com.sg edu.sg gov.sg
co.kr or.kr
co.il org.il
com.ar com.co com.hk com.tw com.my com.ph com.pk com.ua com.pl
co.id or.id
github.io herokuapp.com appspot.com blogspot.com
"""


class PublicSuffixList:
    """The PSL algorithm (https://publicsuffix.org/list/) over a set of rules."""

    def __init__(self, rules: Iterable[str]) -> None:
        self._rules: set[str] = set()
        self._exceptions: set[str] = set()
        for raw in rules:
            line = raw.strip()
            if not line or line.startswith("//"):
                continue
            rule = line.split()[0].lower()
            if not rule.isascii():
                try:
                    rule = ".".join(
                        part if part == "*" else part.encode("idna").decode("ascii")
                        for part in rule.split(".")
                    )
                except UnicodeError:
                    continue
            if rule.startswith("!"):
                self._exceptions.add(rule[1:])
            else:
                self._rules.add(rule)

    @classmethod
    def from_file(cls, path: str | Path) -> PublicSuffixList:
        with open(path, encoding="utf-8") as fh:
            return cls(fh)

    def public_suffix(self, domain: str) -> str:
        labels = domain.lower().rstrip(".").split(".")
        n = len(labels)
        best = 1  # the implicit "*" rule
        for i in range(n):
            candidate = ".".join(labels[i:])
            if candidate in self._exceptions:
                return ".".join(labels[i + 1 :])
            wildcard = ".".join(["*", *labels[i + 1 :]]) if i + 1 < n else "*"
            if candidate in self._rules or (i + 1 < n and wildcard in self._rules):
                best = max(best, n - i)
        return ".".join(labels[n - best :])

    def organizational_domain(self, domain: str) -> str:
        """Public suffix plus one label; the domain itself when it is a public suffix."""
        d = domain.lower().rstrip(".")
        suffix = self.public_suffix(d)
        if d == suffix:
            return d
        rest = d[: -len(suffix) - 1]
        return f"{rest.rsplit('.', 1)[-1]}.{suffix}"


_lock = threading.Lock()
_default: PublicSuffixList | None = None
_source = ""


def _load() -> tuple[PublicSuffixList, str]:
    env = os.environ.get("CAPTURE_SERVER_PUBLIC_SUFFIX_LIST")
    candidates: list[str] = [env] if env else []
    try:
        import publicsuffixlist  # type: ignore[import-not-found,unused-ignore]

        pkg_dir = Path(publicsuffixlist.__file__).parent
        candidates.append(str(pkg_dir / "public_suffix_list.dat"))
    except ImportError:
        pass
    candidates.extend(_SYSTEM_PATHS)
    for path in candidates:
        try:
            return PublicSuffixList.from_file(path), path
        except OSError:
            continue
    return PublicSuffixList(_BUILTIN.split()), "builtin"


def default_list() -> PublicSuffixList:
    global _default, _source
    with _lock:
        if _default is None:
            _default, _source = _load()
        return _default


def list_source() -> str:
    """Which list is in use: a file path or "builtin"."""
    default_list()
    return _source


def organizational_domain(domain: str) -> str:
    return default_list().organizational_domain(domain)
