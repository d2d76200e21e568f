"""The authenticate stage and its effect on attribution: pure, evidence built by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from capture_server.authentication import AuthenticationResults, MethodResult, StructuralProblem
from capture_server.pipeline import STAGES, run_pipeline
from capture_server.pipeline.message import (
    Action,
    AuthEvidence,
    AuthMode,
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    Kind,
    Reason,
)
from capture_server.smtp import replies

from .helpers import RULES, snapshot

RAW = (
    b"From: Rita Rep <rita@acme.test>\r\nTo: Carl <carl@globex.test>\r\n"
    b"Subject: Quote\r\nMessage-ID: <q1@acme.test>\r\n\r\nHello Carl\r\n"
)


def results(
    from_address: str = "rita@acme.test", *, aligned: bool = True, temporary: bool = False
) -> AuthenticationResults:
    domain = from_address.rpartition("@")[2]
    dkim = MethodResult("dkim", "pass" if aligned else "none", domain, "")
    return AuthenticationResults(
        authserv_id="capture.test",
        methods=(dkim,),
        from_domain=domain,
        dmarc_policy=None,
        aligned=aligned,
        temporary_error=temporary,
        source="local",
        from_address=from_address,
    )


def run(
    mode: AuthMode,
    evidence: AuthEvidence | None,
    *,
    raw: bytes = RAW,
    mail_from: str = "rita@acme.test",
) -> Decision:
    envelope = Envelope(mail_from, "acme-bcc@capture.localhost", "test",
                        datetime(2026, 11, 23, tzinfo=UTC))  # fmt: skip
    message = CapturedMessage(envelope, CaptureTarget(7, "acme", Kind.BCC), raw, evidence)
    snap = snapshot(rules=dataclasses.replace(RULES, auth_mode=mode))
    return run_pipeline(message, snap, STAGES)


def test_enforce_logs_an_authenticated_rep() -> None:
    decision = run(AuthMode.ENFORCE, AuthEvidence(results(), ()))
    assert (decision.action, decision.reason) == (Action.LOG, Reason.LOGGED)
    assert decision.draft is not None and decision.draft.owner == "rita@acme.test"
    assert decision.authentication is not None
    assert decision.authentication.as_dict()["outcome"] == "pass"


def test_enforce_refuses_an_unaligned_from() -> None:
    decision = run(AuthMode.ENFORCE, AuthEvidence(results(aligned=False), ()))
    assert (decision.action, decision.reason) == (Action.REJECT, Reason.AUTH_FAILED)
    assert replies.for_decision(decision, None, "evt").startswith("550 5.7.26")
    assert [entry.stage for entry in decision.trace] == ["parse", "authenticate"]


def test_enforce_refuses_a_structural_problem_even_when_aligned() -> None:
    problem = StructuralProblem("multiple_from", "2 From headers")
    decision = run(AuthMode.ENFORCE, AuthEvidence(results(), (problem,)))
    assert decision.reason is Reason.AUTH_FAILED
    assert decision.authentication is not None
    assert decision.authentication.as_dict()["structure"] == [
        {"code": "multiple_from", "detail": "2 From headers"}
    ]


def test_a_dns_failure_or_no_evidence_defers_in_enforce() -> None:
    for evidence in (AuthEvidence(results(aligned=False, temporary=True), ()), None):
        decision = run(AuthMode.ENFORCE, evidence)
        assert (decision.action, decision.reason) == (Action.DEFER, Reason.AUTH_TEMPERROR)
        assert decision.draft is None
        assert replies.for_decision(decision, None, "evt") == replies.DNS_TEMPORARY_FAILURE
        # Several recipients: a deferral makes the client retry the whole transaction.
        assert (
            replies.combine(["250 2.0.0 queued as eng_1", replies.DNS_TEMPORARY_FAILURE])[0] == "4"
        )


def test_report_never_blocks_and_says_what_would_fail() -> None:
    for evidence in (
        AuthEvidence(results(aligned=False), ()),
        AuthEvidence(results(aligned=False, temporary=True), ()),
        None,
    ):
        decision = run(AuthMode.REPORT, evidence)
        assert decision.action is Action.LOG
        auth_entry = decision.trace[1]
        assert auth_entry.stage == "authenticate"
        assert auth_entry.detail.startswith("report only; would fail")


def test_off_does_not_look_at_evidence() -> None:
    decision = run(AuthMode.OFF, AuthEvidence(results(aligned=False), ()))
    assert decision.action is Action.LOG
    assert decision.authentication is not None
    assert decision.authentication.as_dict()["mode"] == "off"
    assert decision.trace[1].outcome == "skip"


def test_attribution_uses_the_authenticated_from_address() -> None:
    # The From as authentication parsed it names Sam: Sam owns it, whatever else parse read.
    decision = run(AuthMode.ENFORCE, AuthEvidence(results("sam@acme.test"), ()))
    assert decision.draft is not None and decision.draft.owner == "sam@acme.test"


def test_enforce_never_lets_mail_from_name_a_rep_for_another_domain() -> None:
    spoof = RAW.replace(b"Rita Rep <rita@acme.test>", b'"rita@acme.test" <mallory@evil.test>')
    evidence = AuthEvidence(results("mallory@evil.test"), ())  # evil.test did authenticate
    decision = run(AuthMode.ENFORCE, evidence, raw=spoof, mail_from="rita@acme.test")
    assert (decision.action, decision.reason) == (Action.REJECT, Reason.SENDER_NOT_USER)
    # Report keeps today's behaviour (the envelope sender still attributes)...
    assert run(AuthMode.REPORT, evidence, raw=spoof).action is Action.LOG
    # ...and in enforce an envelope sender of the authenticated organisation still counts.
    bounce = AuthEvidence(results("noreply@acme.test"), ())
    unknown_from = RAW.replace(b"Rita Rep <rita@acme.test>", b"<noreply@acme.test>")
    decision = run(AuthMode.ENFORCE, bounce, raw=unknown_from, mail_from="rita@acme.test")
    assert decision.draft is not None and decision.draft.owner == "rita@acme.test"
