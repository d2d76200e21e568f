"""Acceptance test: the shared corpus of real client forwards (23 languages).

The corpus lives beside the repository (``../shared/corpora/forwarded``) and is read at run
time; it is never copied into the repository.  Its README defines each expectation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capture_server.forwarding import ForwardedBlock, Mailbox, parse_forwarded

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "forwarded"


def _load() -> list[Any]:
    index = CORPUS / "cases.json"
    if not index.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(index.read_text(encoding="utf-8"))["cases"]
    params = []
    seen: dict[str, int] = {}
    for case in cases:
        stem = Path(case["body_file"]).stem
        if case["subject_file"]:
            stem += "+" + Path(case["subject_file"]).stem
        seen[stem] = seen.get(stem, 0) + 1
        case_id = stem if seen[stem] == 1 else f"{stem}#{seen[stem]}"
        params.append(pytest.param(case, id=case_id))
    return params


CASES = _load()


def _read(rel: str) -> str:
    return (CORPUS / rel).read_text(encoding="utf-8")


def _run(case: dict[str, Any], *, innermost: bool) -> ForwardedBlock | None:
    subject = _read(case["subject_file"]) if case["subject_file"] else None
    return parse_forwarded(_read(case["body_file"]), subject, innermost=innermost)


def _check_mailbox(got: Mailbox | None, want: dict[str, Any], what: str) -> None:
    got_address = (got.address or None) if got is not None else None
    got_name = got.name if got is not None else None
    if "address" in want:
        assert got_address == want["address"], f"{what}.address"
    if "name" in want:
        assert got_name == want["name"], f"{what}.name"


def _check_list(got: tuple[Mailbox, ...], want: list[dict[str, Any]], what: str) -> None:
    if not want:
        assert got == (), f"{what} must be empty"
        return
    assert len(got) >= len(want), f"{what}: {got!r}"
    for k, entry in enumerate(want):
        _check_mailbox(got[k], entry, f"{what}[{k}]")


def _check(block: ForwardedBlock | None, expect: dict[str, Any]) -> None:
    if not expect["forwarded"]:
        assert block is None, f"not a forward, got {block!r}"
        return
    assert block is not None, "forward not found"
    if "subject" in expect:
        assert block.subject == expect["subject"]
    if "body" in expect:
        assert block.body.strip() == expect["body"].strip()
    if "date_present" in expect:
        assert bool(block.date) == expect["date_present"]
    if "from" in expect:
        if expect["from"] is None:
            assert block.sender is None
        else:
            _check_mailbox(block.sender, expect["from"], "from")
    if "to" in expect:
        _check_list(block.to, expect["to"], "to")
    if "cc" in expect:
        _check_list(block.cc, expect["cc"], "cc")
    if "message" in expect:
        want = expect["message"].strip() if expect["message"] is not None else None
        got = block.note.strip() if block.note is not None else None
        assert got == want, "message (note)"


@pytest.mark.skipif(not CASES, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("case", CASES or [None])
def test_corpus_case(case: dict[str, Any]) -> None:
    _check(_run(case, innermost=True), case["expect"])


@pytest.mark.skipif(not CASES, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("case", CASES or [None])
def test_corpus_case_outermost(case: dict[str, Any]) -> None:
    """The corpus expects the outermost block; innermost=False must agree."""
    _check(_run(case, innermost=False), case["expect"])
