"""HTML → plain text for forwarded mail (stdlib ``html.parser`` only; bounded)."""

from __future__ import annotations

from html.parser import HTMLParser

MAX_HTML_CHARS = 4_000_000
MAX_NESTING = 200

_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
        "center",
    }
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "svg"})
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip = 0
        self.quote = 0
        self.pre = 0

    # Each finished line carries the blockquote depth it was written at.
    def _flush(self) -> None:
        text = "".join(self.current).replace("\u00a0", " ")
        self.current = []
        if self.pre == 0:
            text = " ".join(text.split())
        prefix = "> " * min(self.quote, MAX_NESTING)
        self.lines.append((prefix + text).rstrip() if text else prefix.rstrip())

    def _newline(self) -> None:
        """End the current line at a block boundary; markup whitespace alone is dropped."""
        if not self.current:
            return
        if self.pre == 0 and not "".join(self.current).strip(" \t\n\r\f"):
            self.current = []
            return
        self._flush()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self._flush()
        elif tag in _BLOCK:
            self._newline()
            if tag == "blockquote":
                self.quote += 1
            elif tag == "pre":
                self.pre += 1
            elif tag == "li":
                self.current.append("- ")
        elif tag in ("td", "th") and self.current:
            self.current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            return
        if tag == "br":
            self._flush()
        elif tag in _BLOCK:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if self.skip:
                self.skip -= 1
            return
        if self.skip:
            return
        if tag in _BLOCK:
            self._newline()
            if tag == "blockquote" and self.quote:
                self.quote -= 1
            elif tag == "pre" and self.pre:
                self.pre -= 1

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            parts = data.split("\n")
            for k, part in enumerate(parts):
                if k:
                    self._flush()
                self.current.append(part)
            return
        self.current.append(data.replace("\n", " "))


def _defuse(html: str) -> str:
    """Escape the markup that makes ``html.parser`` rescan (quadratic time) - linear pass.

    A ``<`` with no ``>`` before the next ``<`` cannot open a tag: it becomes ``&lt;``.
    Comments and CDATA sections are dropped (an unterminated one drops the rest, as a
    browser would).  Quotes inside a tag are dropped when unbalanced.
    """
    out: list[str] = []
    i = 0
    n = len(html)
    while i < n:
        j = html.find("<", i)
        if j < 0:
            out.append(html[i:])
            break
        out.append(html[i:j])
        if html.startswith("<!--", j):
            k = html.find("-->", j + 4)
            i = n if k < 0 else k + 3
            continue
        if html.startswith("<![CDATA[", j):
            k = html.find("]]>", j + 9)
            i = n if k < 0 else k + 3
            continue
        nxt = html.find("<", j + 1)
        limit = n if nxt < 0 else nxt
        gt = html.find(">", j + 1, limit)
        if gt < 0:
            out.append("&lt;")
            i = j + 1
            continue
        tag = html[j : gt + 1]
        if tag.count('"') % 2 or tag.count("'") % 2:
            tag = tag.replace('"', "").replace("'", "")
        out.append(tag)
        i = gt + 1
    return "".join(out)


def html_to_text(html: str) -> str:
    """Readable text from an HTML mail body.

    Block elements and ``<br>`` end lines; ``script``, ``style`` and ``head`` are dropped;
    entities are decoded (``&lt;a@b.c&gt;`` → ``<a@b.c>``); ``<blockquote>`` content is
    kept and prefixed with ``"> "`` per level, which the forward parser strips; runs of
    blank lines collapse to one.  Input beyond 4 MB is ignored.
    """
    parser = _Extractor()
    try:
        parser.feed(_defuse(html[:MAX_HTML_CHARS]))
        parser.close()
    except (AssertionError, ValueError):  # pragma: no cover - html.parser is lenient
        pass
    if parser.current:
        parser._flush()
    out: list[str] = []
    blank = False
    for line in parser.lines:
        is_blank = not line.strip("> ").strip()
        if is_blank:
            if blank or not out:
                continue
            blank = True
            out.append(line.rstrip())
            continue
        blank = False
        out.append(line)
    return "\n".join(out).strip()
