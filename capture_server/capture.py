"""One message through the whole path: read the store, run the pipeline, write, reply.

The SMTP handler, `ingest` and `dry-run` all come through here, so they decide alike.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from capture_server import metrics
from capture_server.archive import ArchiveError, RawArchive
from capture_server.authentication import (
    AuthenticationResults,
    DnsCache,
    DnsConfig,
    check_structure,
    verify_message,
)
from capture_server.config import Settings
from capture_server.logging import get_logger
from capture_server.pipeline import STAGES, Stage, run_pipeline
from capture_server.pipeline.message import (
    AccountRules,
    Action,
    AuthEvidence,
    AuthMode,
    CapturedMessage,
    CaptureTarget,
    Decision,
    Envelope,
    Kind,
)
from capture_server.pipeline.thread import thread_lookup
from capture_server.smtp import replies
from capture_server.spool import Quarantine
from capture_server.store.repositories import RecordResult, Store, StoreUnavailable, new_id
from capture_server.store.writer import GroupWriter

log = get_logger("capture")
P = ParamSpec("P")
T = TypeVar("T")

# As many as the default pool would have (Python 3.8+): the pipeline holds the GIL, so more
# threads would not run more messages at once; without group commit each one also holds a
# store connection while it writes.
CAPTURE_THREADS = min(32, (os.cpu_count() or 1) + 4)


def rules_defaults(settings: Settings) -> AccountRules:
    """The server-wide defaults every account's own settings start from."""
    return AccountRules(
        max_body_bytes=settings.max_body_bytes,
        max_attachment_bytes=settings.max_attachment_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_mime_depth=settings.max_mime_depth,
    )


@dataclass(frozen=True)
class Outcome:
    reply: str
    event_id: str | None
    engagement_id: str | None
    decision: Decision | None  # None when the message was quarantined


class CaptureService:
    def __init__(self, store: Store, settings: Settings, stages: Sequence[Stage] = STAGES) -> None:
        self.store = store
        self.stages = tuple(stages)
        self.settings = settings
        self.quarantine = Quarantine(settings.quarantine_dir)
        self.archive = RawArchive(Path(settings.archive_dir)) if settings.archive_dir else None
        self.defaults = rules_defaults(settings)
        self.dns_cache = DnsCache(settings.dns_cache_seconds)
        # The daemon may set a GroupWriter (store/writer.py): concurrent records, one commit.
        self.writer: GroupWriter | None = None
        # capture_async's threads, apart from the default pool (see there); made on first use.
        self._executor: ThreadPoolExecutor | None = None
        self._runner: asyncio.Runner | None = None  # gather_evidence_now's event loop

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(CAPTURE_THREADS, thread_name_prefix="capture")
            weakref.finalize(self, self._executor.shutdown, wait=False)
        return self._executor

    def use_settings(self, settings: Settings) -> None:
        """Swap in reloaded settings (SIGHUP); the quarantine and archive folders stay."""
        self.settings = settings
        self.defaults = rules_defaults(settings)
        self.dns_cache = DnsCache(settings.dns_cache_seconds)  # the resolver may have changed

    def archive_raw(self, raw: bytes, decision: Decision) -> str | None:
        """Archive an accepted message before its commit; a failure is transient (451)."""
        if self.archive is None or decision.action not in (Action.LOG, Action.IGNORE):
            return None  # rejected and deferred mail was never acknowledged: nothing to rebuild
        try:
            return self.archive.put(raw)
        except ArchiveError as error:
            log.error("archive_failed", error=str(error)[:200])
            raise StoreUnavailable(str(error)) from error

    def decide(self, message: CapturedMessage) -> Decision:
        """Run the pipeline without writing anything (dry-run, and the first half of capture)."""
        lookup = thread_lookup(message.raw)
        with metrics.STORE_SECONDS.labels("snapshot").time():
            snapshot = self.store.snapshot(
                message.target.account_id,
                lookup.message_ids,
                self.defaults,
                lookup if message.target.kind is Kind.REPLY else None,
                message.target.account_version,
            )  # with the account's extractors (cached with its users and rules)
        return run_pipeline(message, snapshot, self.stages, metrics.observe_stage)

    async def gather_evidence(
        self, raw: bytes, envelope: Envelope, targets: Iterable[CaptureTarget]
    ) -> dict[int, AuthEvidence | None]:
        """Sender-authentication evidence per account (None where auth_mode is off).

        The I/O half of authentication, before the pure pipeline: DNS runs once per
        message whatever the recipients, and not at all when every account is off.
        Raises StoreUnavailable when the accounts' settings cannot be read.
        """
        versions: dict[int, int | None] = {}
        for target in targets:
            versions.setdefault(target.account_id, target.account_version)
        modes = {}
        for account_id, version in versions.items():
            # Cached at the version RCPT read: no thread hop, no statement.
            rules = None if version is None else self.store.cached_rules(
                account_id, version, self.defaults
            )  # fmt: skip
            if rules is None:
                rules = await asyncio.to_thread(
                    self.store.account_rules, account_id, self.defaults, version
                )
            modes[account_id] = rules.auth_mode
        if all(mode is AuthMode.OFF for mode in modes.values()):
            return dict.fromkeys(versions)
        evidence = AuthEvidence(await self._verify(raw, envelope), check_structure(raw))
        return {
            account_id: None if mode is AuthMode.OFF else evidence
            for account_id, mode in modes.items()
        }

    def gather_evidence_now(
        self, raw: bytes, envelope: Envelope, target: CaptureTarget
    ) -> AuthEvidence | None:
        """gather_evidence for one target, from synchronous code (the CLI).

        On one event loop for the service's life: a new loop and thread pool per message
        (asyncio.run) cost ~1 ms, an eighth of an ingested message."""
        if self._runner is None:
            self._runner = asyncio.Runner()
            weakref.finalize(self, self._runner.close)
        found = self._runner.run(self.gather_evidence(raw, envelope, [target]))
        return found[target.account_id]

    async def _verify(self, raw: bytes, envelope: Envelope) -> AuthenticationResults | None:
        current = self.settings
        budget = 2 * current.dns_timeout  # look-ups run in parallel; a few chain (SPF, DMARC)
        try:
            return await asyncio.wait_for(
                verify_message(
                    raw,
                    mail_from=envelope.mail_from,
                    helo=envelope.helo,
                    client_ip=envelope.client_ip,
                    authserv_id=current.effective_authserv_id,
                    dns=DnsConfig(current.dns_nameservers, current.dns_port, current.dns_timeout),
                    trusted_relays=frozenset(current.trusted_relays),
                    trusted_authserv_ids=frozenset(a.lower() for a in current.trusted_authserv_ids),
                    cache=self.dns_cache,
                ),
                budget,
            )
        except TimeoutError:
            # No evidence is never a pass: decide() makes it a tempfail in enforce.
            log.warning("authentication_timed_out", seconds=budget, client_ip=envelope.client_ip)
            return None

    def capture(
        self,
        raw: bytes,
        envelope: Envelope,
        target: CaptureTarget,
        *,
        evidence: AuthEvidence | None = None,
        quarantine_on_crash: bool = True,
        event_id: str | None = None,
    ) -> Outcome:
        """Decide and record; raises StoreUnavailable on a transient store fault (→ 451).

        A pipeline crash holds the message in the quarantine (replay raises instead).
        """
        message = CapturedMessage(envelope, target, raw, evidence)
        event_id = event_id or new_id("evt")
        try:
            decision, archive_key = self._decide_to_record(message)
            record = self.writer.record if self.writer else self.store.record
            with metrics.STORE_SECONDS.labels("record").time():
                result = record(
                    message, decision, event_id, replies.for_decision, archive_key=archive_key
                )
        except StoreUnavailable:
            raise
        except Exception as error:
            if not quarantine_on_crash:
                raise
            return self._hold(message, error)
        return self._captured(message, result, event_id)

    async def capture_async(
        self,
        raw: bytes,
        envelope: Envelope,
        target: CaptureTarget,
        *,
        evidence: AuthEvidence | None,
        event_id: str,
    ) -> Outcome:
        """capture() for the daemon: the pipeline and the writes run on the capture threads,
        and no thread waits out a group commit (the event loop awaits it).

        The default thread pool stays free for RCPT look-ups, health checks and DKIM, however
        slow the database is (a capture may wait for a lock up to
        database_lock_timeout_seconds)."""
        message = CapturedMessage(envelope, target, raw, evidence)
        in_thread = self._on_capture_thread
        try:
            decision, archive_key = await in_thread(self._decide_to_record, message)
            args = (message, decision, event_id, replies.for_decision)
            started = time.perf_counter()
            if self.writer is not None:
                committed = self.writer.submit(*args, archive_key=archive_key)
                result = await asyncio.wrap_future(committed)
            else:
                result = await in_thread(self.store.record, *args, archive_key=archive_key)
            metrics.STORE_SECONDS.labels("record").observe(time.perf_counter() - started)
        except StoreUnavailable:
            raise
        except Exception as error:
            return await in_thread(self._hold, message, error)
        return self._captured(message, result, event_id)

    async def _on_capture_thread(
        self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """asyncio.to_thread on the capture threads (with the log context, as to_thread)."""
        call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _decide_to_record(self, message: CapturedMessage) -> tuple[Decision, str | None]:
        """The pipeline's decision, and the archive key to record with it."""
        decision = self.decide(message)
        return decision, self.archive_raw(message.raw, decision)

    def _hold(self, message: CapturedMessage, error: Exception) -> Outcome:
        """A bug in a stage, or a write the database refuses for this message alone:
        retrying would fail forever, so hold it whole for `replay` and say so."""
        quarantine_id = self.quarantine.put(
            message.envelope, message.raw, f"{type(error).__name__}: {error}"
        )
        log.error(
            "message_held",
            quarantine_id=quarantine_id,
            error=type(error).__name__,
            account=message.target.account_slug,
            exc_info=error,
        )
        return Outcome(replies.quarantined(quarantine_id), None, None, None)

    @staticmethod
    def _captured(message: CapturedMessage, result: RecordResult, event_id: str) -> Outcome:
        metrics.MESSAGES.labels(result.decision.action.value, result.decision.reason.value).inc()
        log.info(
            "message_captured",
            account=message.target.account_slug,
            kind=message.target.kind.value,
            decision=result.decision.action.value,
            reason=result.decision.reason.value,
            event_id=event_id,
            engagement_id=result.engagement_id,
            mail_from=message.envelope.mail_from,
            client_ip=message.envelope.client_ip,
        )
        return Outcome(result.smtp_reply, event_id, result.engagement_id, result.decision)
