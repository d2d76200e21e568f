"""Every query the daemon and the CLI run. Sync SQLModel; the daemon calls it from threads."""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, col, select

from capture_server.account_settings import describe_rules, rules_from_json, updated_settings
from capture_server.archive import raw_key
from capture_server.capture_addresses import address_key, capture_address, valid_slug
from capture_server.pipeline.canonical import canonical_address, canonical_domain
from capture_server.pipeline.defaults import FREE_MAIL_DOMAINS
from capture_server.pipeline.identity import tombstone_hash
from capture_server.pipeline.message import (
    AccountRules,
    AccountSnapshot,
    Action,
    AddressKind,
    CapturedMessage,
    CaptureTarget,
    Decision,
    EngagementDraft,
    Extractor,
    Kind,
    Mailbox,
    Reason,
    SharingLevel,
    ThreadInfo,
    UserAddress,
    UserInfo,
)
from capture_server.pipeline.thread import ThreadLookup
from capture_server.received import received_keys
from capture_server.store import cursor_sql, enrichment, profiles, webhooks
from capture_server.store.blobs import write_streamed
from capture_server.store.cache import VERSION_QUERY, VERSIONS, VersionedCache, account_version
from capture_server.store.capture_sql import (
    contact_ids,
    dialect_of,
    existing_deals,
    statements,
)
from capture_server.store.db import PER_STATEMENT, WriterTurnTimeout, writer_turn, writing
from capture_server.store.integration_models import ExtractorRow
from capture_server.store.models import (
    Account,
    AccountDomain,
    AttachmentRow,
    Blob,
    CaptureAddress,
    CaptureEvent,
    Company,
    Contact,
    ContactAddress,
    Engagement,
    EngagementCompany,
    EngagementContact,
    EngagementDeal,
    NeverLog,
    Participant,
    ServerState,
    Tombstone,
    User,
    utcnow,
)
from capture_server.store.models import (
    UserAddress as UserAddressRow,
)

MAX_THREADS = 20  # threads one message may name that are read for reply capture
MAX_THREAD_IDS = 100  # Message-IDs one engagement notes for its thread


class StoreError(Exception):
    """Something a user asked for cannot be done; the message says why."""


class StoreUnavailable(Exception):
    """A transient fault of the database: the SMTP client should retry (451)."""


@dataclass(frozen=True)
class RecordResult:
    event_id: str
    engagement_id: str | None
    decision: Decision  # as finally recorded (a duplicate turns a log into an ignore)
    smtp_reply: str  # the reply the capture event holds: the one to send


@dataclass(frozen=True)
class AccountState:
    """What the rules read of an account that only admin writes change (cached, versioned)."""

    slug: str
    settings_json: str
    fallback_owner_id: int | None
    domains: frozenset[str]
    users: dict[int, UserInfo]
    addresses: dict[str, tuple[UserAddress, ...]]
    never_log: frozenset[str]
    tombstones: frozenset[str]
    extractors: tuple[Extractor, ...]
    webhooks: tuple[webhooks.Hook, ...]  # (id, events): who gets an outbox row


def new_id(prefix: str) -> str:
    """Time-ordered, unguessable ids: sortable in listings, safe to show in SMTP replies."""
    return f"{prefix}_{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


def _insert_ignore(session: Session, model: type[SQLModel], values: dict[str, Any],
                   conflict: Sequence[str]) -> None:  # fmt: skip
    """INSERT ... ON CONFLICT DO NOTHING: concurrent writers never race check-then-insert."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    session.execute(statement)


def _transient(error: DBAPIError) -> bool:
    if isinstance(error, OperationalError):
        return True
    return bool(error.connection_invalidated)


def waited_out(error: BaseException) -> bool:
    """A write that gave up waiting for a lock another transaction held: the writers' turn,
    SQLite's busy timeout, PostgreSQL's lock_timeout. Trying again at once waits as long."""
    if isinstance(error, StoreUnavailable):
        error = error.__cause__ or error
    if isinstance(error, WriterTurnTimeout):
        return True
    if not isinstance(error, OperationalError):
        return False
    return getattr(error.orig, "sqlstate", None) == "55P03" or "database is locked" in str(
        error.orig
    )


@contextmanager
def _unavailable_when_transient() -> Iterator[None]:
    """A transient database fault (lost connection, lock time-out) as StoreUnavailable, which
    the SMTP side answers 451; a constraint violation and anything else as it is."""
    try:
        yield
    except IntegrityError:
        raise
    except WriterTurnTimeout as error:
        raise StoreUnavailable(str(error)) from error
    except DBAPIError as error:
        if _transient(error):
            raise StoreUnavailable(str(error.orig or error)) from error
        raise


def _thread_params(account_id: int, message_ids: Iterable[str]) -> dict[str, Any] | None:
    """The thread look-up's parameters (None: no ids, nothing to look up)."""
    wanted = sorted({m.strip().lower() for m in message_ids if m})[:200]
    return {"account_id": account_id, "message_ids": wanted} if wanted else None


def _threads_from(rows: Iterable[tuple[Any, ...]]) -> dict[str, str]:
    """message id → thread: engagements' own ids first, then ids a logged email referred to or
    a logged forward carried (see ThreadMessage); the statement orders them so."""
    found: dict[str, str] = {}
    for _, message_id, thread in rows:
        if message_id:
            found.setdefault(message_id.lower(), thread)
    return found


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_engine = writing(engine)
        self.writer_turn = writer_turn(engine)  # SQLite: writers queue without polling
        # Checked against account_version on every use: see store/cache.py.
        self._states: VersionedCache[AccountState] = VersionedCache()
        self._targets: VersionedCache[CaptureTarget] = VersionedCache()
        self._group = threading.local()  # set by store/writer.py in its thread only
        self._sql = statements(engine.dialect.name)
        # Reads of one statement each without BEGIN/ROLLBACK around them (a version check, the
        # snapshot's thread ids). SQLite: its begin hook skips BEGIN (AUTOCOMMIT would undo
        # the isolation_level=None db.py sets, for later users of the pooled connection).
        self._autocommit = (
            engine.execution_options(**{PER_STATEMENT: True})
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @contextmanager
    def _write(self) -> Iterator[Session]:
        group: Session | None = getattr(self._group, "session", None)
        if group is not None:  # the group-commit writer's thread: its batch's transaction
            yield group
            return
        with (
            _unavailable_when_transient(),
            self.writer_turn.held(),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def _read(self, per_statement: bool = False) -> Iterator[Session]:
        """A read session. per_statement: no transaction around it (on PostgreSQL no BEGIN
        and ROLLBACK round trips; its READ COMMITTED gives each statement its own snapshot
        anyway), for reads whose statements need no common snapshot."""
        engine = self._autocommit if per_statement else self.engine
        with _unavailable_when_transient(), Session(engine, expire_on_commit=False) as session:
            yield session

    # -- server ---------------------------------------------------------------------------

    def server_secret(self, configured: str = "") -> str:
        if configured:
            return configured
        with self._write() as session:
            _insert_ignore(
                session, ServerState, {"key": "secret", "value": secrets.token_hex(32)}, ["key"]
            )
            state = session.get(ServerState, "secret")
            assert state is not None
            return state.value

    def ping(self) -> None:
        with self._read() as session:
            session.exec(select(func.count()).select_from(Account)).one()

    # -- accounts, users ------------------------------------------------------------------

    def create_account(
        self, slug: str, name: str, domains: Iterable[str], capture_domain: str, secret: str
    ) -> dict[str, str]:
        slug = slug.strip().lower()
        if not valid_slug(slug):
            raise StoreError(
                f"account slug {slug!r} must be 1-40 lower-case letters, digits or hyphens"
            )
        clean_domains = sorted(
            {canonical_domain(d.strip().lstrip("@").rstrip(".")) for d in domains}
        )
        if not clean_domains or any("." not in d or "@" in d for d in clean_domains):
            raise StoreError("give each --domain as a domain name such as example.com")
        free = [d for d in clean_domains if d in FREE_MAIL_DOMAINS]
        if free:
            # Every address of an account domain is the account's own: mail with anyone on
            # gmail.com would be internal, never logged, and no one there a contact.
            raise StoreError(
                f"{', '.join(free)} is a free-mail domain, not the company's own: every address "
                "there would count as internal; give the domain the company's mail comes from"
            )
        try:
            with self._write() as session:
                account = Account(slug=slug, name=name)
                session.add(account)
                session.flush()
                assert account.id is not None
                for domain in clean_domains:
                    session.add(AccountDomain(account_id=account.id, domain=domain))
                addresses = self._issue_addresses(session, account, capture_domain, secret)
        except IntegrityError as error:
            raise StoreError(f"account {slug!r} already exists") from error
        return addresses

    def _issue_addresses(
        self, session: Session, account: Account, domain: str, secret: str
    ) -> dict[str, str]:
        assert account.id is not None
        addresses = {}
        for kind in Kind:
            address = capture_address(secret, account.slug, kind, account.token_generation, domain)
            session.add(CaptureAddress(account_id=account.id, kind=kind.value, address=address))
            addresses[f"{kind.value}_address"] = address
        return addresses

    def capture_addresses(self, slug: str) -> dict[str, str]:
        with self._read() as session:
            account = self._account(session, slug)
            rows = session.exec(
                select(CaptureAddress).where(
                    CaptureAddress.account_id == account.id,
                    col(CaptureAddress.retired_at).is_(None),
                )
            ).all()
            return {f"{row.kind}_address": row.address for row in rows}

    def _account(self, session: Session, slug: str) -> Account:
        account = session.exec(select(Account).where(Account.slug == slug.lower())).first()
        if account is None:
            raise StoreError(f"no account {slug!r} (create it with: capture-server account add)")
        return account

    def account_settings(self, slug: str, defaults: AccountRules) -> dict[str, Any]:
        """The effective settings of an account: its own values over the server defaults."""
        with self._read() as session:
            account = self._account(session, slug)
            rules = rules_from_json(account.settings_json, defaults)
            settings = describe_rules(rules)
            settings["fallback_owner"] = None
            if account.fallback_owner_id is not None:
                owner = session.get(User, account.fallback_owner_id)
                settings["fallback_owner"] = owner.email if owner else None
            return settings

    def set_account_setting(
        self, slug: str, key: str, value: str | None, defaults: AccountRules
    ) -> None:
        """Set one setting (None: back to the default); validated before it is stored."""
        with self._write() as session:
            account = self._account(session, slug)
            if key == "fallback_owner":
                account.fallback_owner_id = (
                    None if value is None else self._user(session, account, value).id
                )
            else:
                account.settings_json = updated_settings(
                    account.settings_json, key, value, defaults
                )
            session.add(account)

    def _user(self, session: Session, account: Account, email: str) -> User:
        user = session.exec(
            select(User).where(
                User.account_id == account.id, User.email == canonical_address(email)
            )
        ).first()
        if user is None:
            raise StoreError(f"no user {email} in account {account.slug!r}")
        return user

    def add_user(
        self,
        slug: str,
        email: str,
        *,
        name: str | None = None,
        aliases: Sequence[str] = (),
        connected: Sequence[str] = (),
        teams: Sequence[str] = (),
        sharing: SharingLevel = SharingLevel.EVERYTHING,
    ) -> int:
        login = _clean_address(email)
        extra = [
            (AddressKind.CONNECTED, connected),
            (AddressKind.ALIAS, aliases),
            (AddressKind.TEAM, teams),
        ]
        try:
            with self._write() as session:
                account = self._account(session, slug)
                assert account.id is not None
                user = User(account_id=account.id, email=login, name=name, sharing=sharing.value)
                session.add(user)
                session.flush()
                assert user.id is not None
                seen = {login}
                session.add(
                    UserAddressRow(
                        account_id=account.id,
                        user_id=user.id,
                        address=login,
                        kind=AddressKind.LOGIN.value,
                    )
                )
                for kind, addresses in extra:
                    for address in map(_clean_address, addresses):
                        if address in seen:
                            continue
                        seen.add(address)
                        session.add(
                            UserAddressRow(
                                account_id=account.id,
                                user_id=user.id,
                                address=address,
                                kind=kind.value,
                            )
                        )
                return user.id
        except IntegrityError as error:
            raise StoreError(f"user {login} already exists in account {slug!r}") from error

    # -- the capture path -----------------------------------------------------------------

    def resolve_capture_address(self, address: str) -> CaptureTarget | None:
        key = address_key(address)  # lower case, without a +tag
        cached = self._targets.peek(key)
        if cached is not None:
            version = self._version_now(cached.account_id)
            current = self._targets.get(key, version)
            if current is not None:
                return dataclasses.replace(current, account_version=version)
        with self._read() as session:
            # One statement, so its version and its row are of one moment (PostgreSQL too).
            row = session.exec(
                select(CaptureAddress.kind, Account.id, Account.slug, VERSIONS.c.version)
                .join(Account, col(Account.id) == CaptureAddress.account_id)
                .join(VERSIONS, VERSIONS.c.account_id == Account.id, isouter=True)
                .where(CaptureAddress.address == key, col(CaptureAddress.retired_at).is_(None))
            ).first()
            if row is None:
                return None  # not cached: an address may be issued any moment
            kind, account_id, slug, version = row
            assert account_id is not None
            target = CaptureTarget(account_id, slug, Kind(kind), version or 0)
            self._targets.put(key, version or 0, target)
            return target

    def cached_rules(
        self, account_id: int, version: int, defaults: AccountRules
    ) -> AccountRules | None:
        """The account's rules when the cache holds them at `version`: no I/O (None: read)."""
        state = self._states.get(account_id, version)
        return None if state is None else rules_from_json(state.settings_json, defaults)

    def account_rules(
        self, account_id: int, defaults: AccountRules, version: int | None = None
    ) -> AccountRules:
        """One account's rules alone: read before the pipeline, e.g. to know its auth_mode.

        version: the account's version already read (CaptureTarget.account_version)."""
        state = None
        if self._states.peek(account_id) is not None:
            current = self._version_now(account_id) if version is None else version
            state = self._states.get(account_id, current)
        if state is None:
            with self._read() as session:
                state = self._state(session, account_id, version)
        return rules_from_json(state.settings_json, defaults)

    def _version_now(self, account_id: int) -> int:
        """The account's version alone: one statement, no transaction (a cache hit's cost)."""
        rows = self._fetch_alone(VERSION_QUERY, {"account_id": account_id})
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def _fetch_alone(self, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One read statement on the cursor, outside any transaction and session."""
        with _unavailable_when_transient(), self._autocommit.connect() as connection:
            return cursor_sql.fetch(connection, statement, params)

    def _state(self, session: Session, account_id: int, version: int | None = None
               ) -> AccountState:  # fmt: skip
        """The account's cached state, read again when its version moved.

        version: the account's version already read (before these rows, as VersionedCache
        wants), else read now."""
        if version is None:
            version = account_version(session, account_id)  # before the rows: VersionedCache
        state = self._states.get(account_id, version)
        if state is not None:
            return state
        account = session.get(Account, account_id)
        if account is None:
            raise StoreError(f"account {account_id} no longer exists")
        users = {
            u.id: UserInfo(u.id, u.email, u.name, SharingLevel(u.sharing))
            for u in session.exec(select(User).where(User.account_id == account_id))
            if u.id is not None
        }
        addresses: dict[str, list[UserAddress]] = {}
        for row in session.exec(
            select(UserAddressRow).where(UserAddressRow.account_id == account_id)
        ):
            addresses.setdefault(row.address, []).append(
                UserAddress(row.user_id, AddressKind(row.kind))
            )
        state = AccountState(
            slug=account.slug,
            settings_json=account.settings_json,
            fallback_owner_id=account.fallback_owner_id,
            domains=frozenset(
                session.exec(
                    select(AccountDomain.domain).where(AccountDomain.account_id == account_id)
                )
            ),
            users=users,
            addresses={key: tuple(value) for key, value in addresses.items()},
            never_log=frozenset(
                session.exec(select(NeverLog.pattern).where(NeverLog.account_id == account_id))
            ),
            tombstones=frozenset(
                session.exec(
                    select(Tombstone.address_hash).where(Tombstone.account_id == account_id)
                )
            ),
            extractors=tuple(
                Extractor(name, pattern)
                for name, pattern in session.exec(
                    select(ExtractorRow.name, ExtractorRow.pattern)
                    .where(ExtractorRow.account_id == account_id)
                    .order_by(col(ExtractorRow.name))
                )
            ),
            webhooks=tuple(webhooks.hooks_of(session, account_id)),
        )
        self._states.put(account_id, version, state)
        return state

    def account_id(self, slug: str) -> int:
        with self._read() as session:
            account = self._account(session, slug)
            assert account.id is not None
            return account.id

    def snapshot(
        self,
        account_id: int,
        message_ids: Iterable[str] = (),
        defaults: AccountRules | None = None,
        lookup: ThreadLookup | None = None,
        version: int | None = None,
    ) -> AccountSnapshot:
        """Everything the rules need about one account, and the threads these ids belong to.

        With a lookup (the reply address), also the threads themselves: owner, contacts,
        companies, deals, recent replies of the sender, and threads matching the subject.
        version: the account's version read at RCPT (CaptureTarget.account_version).
        """
        cached = None if version is None else self._states.get(account_id, version)
        if cached is not None and lookup is None:
            # The usual case (BCC, forward): one statement, without a session around it.
            params = _thread_params(account_id, message_ids)
            rows = self._fetch_alone(self._sql.threads, params) if params else []
            rules = rules_from_json(cached.settings_json, defaults or AccountRules())
            return self._snapshot_of(account_id, cached, rules, _threads_from(rows))
        # The version is read before the rows (VersionedCache), each thread row stands alone.
        with self._read(per_statement=True) as session:
            state = self._state(session, account_id, version)
            known_threads = self._threads_of(session, account_id, message_ids)
            rules = rules_from_json(state.settings_json, defaults or AccountRules())
            threads: dict[str, ThreadInfo] = {}
            subject_threads: tuple[str, ...] = ()
            if lookup is not None:
                if lookup.subject_hash and rules.reply_subject_days > 0:
                    subject_threads = self._threads_by_subject(
                        session, account_id, lookup.subject_hash
                    )
                wanted = [*dict.fromkeys(known_threads.values()), *subject_threads]
                threads = self._thread_infos(session, account_id, wanted, lookup.sender)
        return self._snapshot_of(account_id, state, rules, known_threads, threads, subject_threads)

    @staticmethod
    def _snapshot_of(account_id: int, state: AccountState, rules: AccountRules,
                     known_threads: dict[str, str], threads: dict[str, ThreadInfo] | None = None,
                     subject_threads: tuple[str, ...] = ()) -> AccountSnapshot:  # fmt: skip
        return AccountSnapshot(
            account_id=account_id,
            slug=state.slug,
            domains=state.domains,
            users=state.users,
            addresses=state.addresses,
            fallback_owner_id=state.fallback_owner_id,
            never_log=state.never_log,
            tombstones=state.tombstones,
            rules=rules,
            known_threads=known_threads,
            threads=threads or {},
            subject_threads=subject_threads,
            extractors=state.extractors,
        )

    def _threads_of(
        self, session: Session, account_id: int, message_ids: Iterable[str]
    ) -> dict[str, str]:
        params = _thread_params(account_id, message_ids)
        if not params:
            return {}
        connection = session.connection()
        return _threads_from(cursor_sql.fetch(connection, dialect_of(connection).threads, params))

    def _threads_by_subject(
        self, session: Session, account_id: int, digest: str
    ) -> tuple[str, ...]:
        newest = func.max(Engagement.created_at)
        rows = session.exec(
            select(Engagement.thread_id, newest)
            .where(Engagement.account_id == account_id, Engagement.subject_hash == digest)
            .group_by(col(Engagement.thread_id))
            .order_by(newest.desc())
            .limit(MAX_THREADS)
        )
        return tuple(thread for thread, _ in rows)

    def _thread_infos(
        self, session: Session, account_id: int, thread_ids: list[str], sender: str | None
    ) -> dict[str, ThreadInfo]:
        """What reply capture needs of each thread; a thread with no engagement left is absent."""
        wanted = list(dict.fromkeys(thread_ids))[:MAX_THREADS]
        if not wanted:
            return {}
        in_threads = (Engagement.account_id == account_id, col(Engagement.thread_id).in_(wanted))
        owners: dict[str, int] = {}
        last: dict[str, datetime] = {}
        for thread, owner, occurred, created in session.exec(
            select(Engagement.thread_id, Engagement.owner_user_id, Engagement.occurred_at,
                   Engagement.created_at)
            .where(*in_threads)
            .order_by(col(Engagement.created_at), col(Engagement.id))
        ):  # fmt: skip
            owners.setdefault(thread, owner)  # the first engagement's owner owns the thread
            when = occurred or created
            last[thread] = max(last.get(thread, when), when)
        contacts: dict[str, list[str]] = {}
        for thread, address in session.exec(
            select(Engagement.thread_id, Contact.primary_address)
            .join(EngagementContact, col(EngagementContact.engagement_id) == Engagement.id)
            .join(Contact, col(Contact.id) == EngagementContact.contact_id)
            .where(*in_threads, col(Contact.deleted_at).is_(None))
            .order_by(col(Contact.id))
        ):
            contacts.setdefault(thread, []).append(address)
        companies: dict[str, list[str]] = {}
        for thread, domain in session.exec(
            select(Engagement.thread_id, Company.domain)
            .join(EngagementCompany, col(EngagementCompany.engagement_id) == Engagement.id)
            .join(Company, col(Company.id) == EngagementCompany.company_id)
            .where(*in_threads)
            .order_by(col(Company.id))
        ):
            companies.setdefault(thread, []).append(domain)
        deals: dict[str, list[int]] = {}
        for thread, deal_id in session.exec(
            select(Engagement.thread_id, EngagementDeal.deal_id)
            .join(EngagementDeal, col(EngagementDeal.engagement_id) == Engagement.id)
            .where(*in_threads)
            .order_by(col(EngagementDeal.deal_id))
        ):
            deals.setdefault(thread, []).append(deal_id)
        recent: dict[str, int] = {}
        if sender:
            since = utcnow() - timedelta(hours=1)
            recent = dict(
                session.exec(
                    select(Engagement.thread_id, func.count())
                    .where(
                        *in_threads,
                        Engagement.kind == Kind.REPLY.value,
                        func.lower(Engagement.from_address) == sender.lower(),
                        col(Engagement.created_at) >= since,
                    )
                    .group_by(col(Engagement.thread_id))
                ).all()
            )
        return {
            thread: ThreadInfo(
                thread_id=thread,
                owner_user_id=owner,
                last_at=last.get(thread),
                contacts=tuple(dict.fromkeys(contacts.get(thread, []))),
                companies=tuple(dict.fromkeys(companies.get(thread, []))),
                deals=tuple(dict.fromkeys(deals.get(thread, []))),
                recent_replies=recent.get(thread, 0),
            )
            for thread, owner in owners.items()
        }

    def record(
        self,
        message: CapturedMessage,
        decision: Decision,
        event_id: str,
        reply_for: Callable[[Decision, str | None, str], str],
        *,
        archive_key: str | None = None,
        prepare: Callable[[Session], None] | None = None,
    ) -> RecordResult:
        """One transaction: the engagement with everything it links, and the capture event.

        prepare runs first in the same transaction (replay --rebuild deletes the old engagement).
        """
        received = received_keys(message.raw)
        hooks = self._cached_hooks(message.target)
        with self._write() as session:
            if prepare is not None:
                prepare(session)
            engagement_id: str | None = None
            if decision.action is Action.LOG and decision.draft is not None:
                account_id = message.target.account_id
                known = contact_ids(
                    session.connection(), account_id, [m.key for m in decision.draft.contacts]
                )  # before the write: the others are created by it
                engagement_id, deals = self._write_engagement(
                    session, account_id, decision.draft, known
                )
                if deals is not None:  # new: values, referenced deals, webhook outbox
                    decision = enrichment.engagement_written(
                        session, message.target, decision, engagement_id, set(known), deals,
                        hooks,
                    )  # fmt: skip
                    draft = decision.draft
                    assert draft is not None
                    profiled = profiles.apply_profile(
                        session, message.target.account_id, engagement_id, draft
                    )  # the sender's signature: fills its contact's empty fields
                    if profiled is not None:
                        decision = dataclasses.replace(decision, trace=(*decision.trace, profiled))
                else:
                    decision = Decision(
                        Action.IGNORE, Reason.DUPLICATE, decision.trace, decision.draft,
                        decision.warnings, decision.authentication,
                    )  # fmt: skip
            email = decision.draft.email if decision.draft else None
            smtp_reply = reply_for(decision, engagement_id, event_id)
            connection = session.connection()
            cursor_sql.fetch(
                connection,
                dialect_of(connection).insert_event,
                {
                    "id": event_id,
                    "account_id": message.target.account_id,
                    "received_at": message.envelope.received_at,
                    "protocol": message.envelope.protocol,
                    "mail_from": message.envelope.mail_from,
                    "rcpt": message.envelope.rcpt,
                    "kind": message.target.kind.value,
                    "message_id": email.message_id if email else None,
                    "subject": email.subject[:998] if email else "",
                    "decision": decision.action.value,
                    "reason": decision.reason.value,
                    "smtp_reply": smtp_reply,
                    "engagement_id": engagement_id,
                    "trace_json": json.dumps([t.as_dict() for t in decision.trace]),
                    "warnings_json": json.dumps(list(decision.warnings)),
                    "authentication_json": (
                        json.dumps(decision.authentication.as_dict())
                        if decision.authentication
                        else None
                    ),
                    "header_from": received.from_address,
                    "header_message_id": received.message_id,
                    "archive_key": archive_key,
                    # What ingest's resume check knows a message without a Message-ID by
                    # (0013); only then given, so other messages' statement is as before it.
                    # The archive key is that hash already: not computed twice.
                    **(
                        {}
                        if received.message_id
                        else {"raw_sha256": archive_key or raw_key(message.raw)}
                    ),
                },
            )
            enrichment.event_written(session, message.target, decision, event_id, smtp_reply, hooks)
        return RecordResult(event_id, engagement_id, decision, smtp_reply)

    def _cached_hooks(self, target: CaptureTarget) -> webhooks.CachedHooks | None:
        """The account's webhooks cached at the version its message was decided under (None:
        not cached at that version, read them in the write transaction)."""
        version = target.account_version
        if version is None:
            return None
        state = self._states.get(target.account_id, version)
        return None if state is None else webhooks.CachedHooks(version, state.webhooks)

    def _write_engagement(
        self, session: Session, account_id: int, draft: EngagementDraft, known: dict[str, int]
    ) -> tuple[str, list[int] | None]:
        """Insert the engagement unless its dedupe key exists: (id, its deals if created now)."""
        connection = session.connection()
        sql = dialect_of(connection)
        keys = [draft.dedupe_key]
        if not draft.dedupe_key.startswith("sha:"):
            keys.append("sha:" + draft.content_hash)  # a reused Message-ID, other content
        for key in keys:
            candidate = new_id("eng")
            values = _engagement_values(candidate, account_id, key, draft)
            if cursor_sql.fetch(connection, sql.insert_engagement, values):
                deals = self._link(session, account_id, candidate, draft, known)
                self._note_thread_ids(connection, account_id, candidate, draft.thread_id, draft)
                return candidate, deals
            [(existing_id, content_hash, thread_id)] = cursor_sql.fetch(
                connection, sql.engagement_by_key, {"account_id": account_id, "key": key}
            )
            if content_hash == draft.content_hash:
                # Another route to the same email may carry ids the first did not (a forward).
                self._note_thread_ids(connection, account_id, existing_id, thread_id, draft)
                return str(existing_id), None
        return str(existing_id), None

    def _note_thread_ids(self, connection: Connection, account_id: int, engagement_id: str,
                         thread_id: str, draft: EngagementDraft) -> None:  # fmt: skip
        cursor_sql.insert_many(
            connection,
            dialect_of(connection).insert_thread_message,
            [
                {"account_id": account_id, "message_id": message_id[:998],
                 "thread_id": thread_id, "engagement_id": engagement_id}
                for message_id in dict.fromkeys(draft.thread_message_ids[:MAX_THREAD_IDS])
            ],
        )  # fmt: skip

    def _link(self, session: Session, account_id: int, engagement_id: str,
              draft: EngagementDraft, known: dict[str, int]) -> list[int]:  # fmt: skip
        """Participants, attachments, contacts, companies and deals; returns the deal ids."""
        connection = session.connection()
        sql = dialect_of(connection)
        email = draft.email
        cursor_sql.insert_many(
            connection,
            sql.insert_participant,
            [
                {"engagement_id": engagement_id, "role": role, "position": position,
                 "address": mailbox.address, "name": mailbox.name}
                for role, mailboxes in (("to", email.to), ("cc", email.cc))
                for position, mailbox in enumerate(mailboxes)
            ],
        )  # fmt: skip
        for position, attachment in enumerate(email.attachments):
            if not write_streamed(session, attachment):  # big ones in pieces (issue 10)
                _insert_ignore(
                    session,
                    Blob,
                    {"sha256": attachment.sha256, "size": attachment.size,
                     "data": attachment.content},
                    ["sha256"],
                )  # fmt: skip
            session.add(
                AttachmentRow(
                    engagement_id=engagement_id,
                    position=position,
                    filename=attachment.filename,
                    content_type=attachment.content_type,
                    size=attachment.size,
                    sha256=attachment.sha256,
                )
            )
        company_ids = self._company_ids(connection, account_id, draft.companies)
        contacts = dict(known)
        if draft.create_contacts:
            missing: dict[str, Mailbox] = {}
            for mailbox in draft.contacts:
                if mailbox.key not in contacts:
                    missing.setdefault(mailbox.key, mailbox)  # the first one names it
            now = utcnow()
            cursor_sql.insert_many(
                connection,
                sql.insert_contact,
                [
                    {"account_id": account_id, "primary_address": key, "name": mailbox.name,
                     "company_id": company_ids.get(mailbox.domain), "created_by": "capture",
                     "created_at": now}
                    for key, mailbox in missing.items()
                ],
            )  # fmt: skip
            contacts.update(contact_ids(connection, account_id, list(missing)))
        linked = list(dict.fromkeys(contacts[m.key] for m in draft.contacts if m.key in contacts))
        cursor_sql.insert_many(
            connection,
            sql.insert_engagement_contact,
            [{"engagement_id": engagement_id, "contact_id": c} for c in linked],
        )
        cursor_sql.insert_many(
            connection,
            sql.insert_engagement_company,
            [{"engagement_id": engagement_id, "company_id": c}
             for c in dict.fromkeys(company_ids.values())],
        )  # fmt: skip
        deal_ids = list(dict.fromkeys([
            *existing_deals(connection, account_id, draft.deals),  # the thread's
            *self._open_deals(connection, linked, draft.max_deals),
        ]))  # fmt: skip
        cursor_sql.insert_many(
            connection,
            sql.insert_engagement_deal,
            [{"engagement_id": engagement_id, "deal_id": d} for d in deal_ids],
        )
        return deal_ids

    @staticmethod
    def _company_ids(connection: Connection, account_id: int, domains: Sequence[str]
                     ) -> dict[str, int]:  # fmt: skip
        """domain → company id, creating the missing ones (usually none: one statement)."""
        if not domains:
            return {}
        sql = dialect_of(connection)
        wanted = list(dict.fromkeys(domains))
        params = {"account_id": account_id, "domains": wanted}
        rows = cursor_sql.fetch(connection, sql.companies_by_domain, params)
        found: dict[str, int] = {domain: company_id for domain, company_id in rows}
        missing = [domain for domain in wanted if domain not in found]
        if missing:
            now = utcnow()
            cursor_sql.insert_many(
                connection,
                sql.insert_company,
                [{"account_id": account_id, "domain": d, "created_at": now} for d in missing],
            )
            params["domains"] = missing
            found.update(cursor_sql.fetch(connection, sql.companies_by_domain, params))
        return {domain: found[domain] for domain in wanted}

    @staticmethod
    def _open_deals(connection: Connection, contact_ids: list[int], limit: int) -> list[int]:
        if not contact_ids:
            return []
        rows = cursor_sql.fetch(
            connection, dialect_of(connection).open_deals, {"contact_ids": contact_ids}
        )
        found = dict.fromkeys(deal_id for (deal_id,) in rows)
        return [deal_id for deal_id in found if deal_id is not None][:limit]

    # -- listings ---------------------------------------------------------------------------

    def engagements(self, slug: str, thread_id: str | None = None) -> list[dict[str, Any]]:
        with self._read() as session:
            account = self._account(session, slug)
            query = select(Engagement).where(Engagement.account_id == account.id)
            if thread_id:
                query = query.where(Engagement.thread_id == thread_id)
            rows = session.exec(query.order_by(col(Engagement.created_at), col(Engagement.id)))
            return [self._engagement_json(session, row) for row in rows]

    def _engagement_json(self, session: Session, row: Engagement) -> dict[str, Any]:
        owner = session.get(User, row.owner_user_id)
        participants = session.exec(
            select(Participant)
            .where(Participant.engagement_id == row.id)
            .order_by(col(Participant.role), col(Participant.position))
        ).all()
        attachments = session.exec(
            select(AttachmentRow)
            .where(AttachmentRow.engagement_id == row.id)
            .order_by(col(AttachmentRow.position))
        ).all()
        contacts = session.exec(
            select(Contact.primary_address)
            .join(EngagementContact, col(EngagementContact.contact_id) == Contact.id)
            .where(EngagementContact.engagement_id == row.id)
            .order_by(col(Contact.id))
        ).all()
        companies = session.exec(
            select(Company.domain)
            .join(EngagementCompany, col(EngagementCompany.company_id) == Company.id)
            .where(EngagementCompany.engagement_id == row.id)
            .order_by(col(Company.id))
        ).all()
        deals = session.exec(
            select(EngagementDeal.deal_id).where(EngagementDeal.engagement_id == row.id)
        ).all()

        def people(role: str) -> list[dict[str, str | None]]:
            return [{"address": p.address, "name": p.name} for p in participants if p.role == role]

        return {
            "id": row.id,
            "kind": row.kind,
            "direction": row.direction,
            "owner": owner.email if owner else None,
            "subject": row.subject,
            "occurred_at": row.occurred_at.isoformat() if row.occurred_at else None,
            "message_id": row.message_id,
            "from": {"address": row.from_address, "name": row.from_name},
            "to": people("to"),
            "cc": people("cc"),
            "body_text": row.body_text,
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                    "sha256": a.sha256,
                }
                for a in attachments
            ],
            "contacts": list(contacts),
            "companies": list(companies),
            "deals": sorted(deals),
            "thread_id": row.thread_id,
            "note": row.note,
            "extracted": enrichment.extracted_values(session, row.id),
        }

    def contacts(self, slug: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Soft-deleted contacts only with include_deleted (they then carry "deleted_at")."""
        with self._read() as session:
            account = self._account(session, slug)
            query = (
                select(Contact, Company.domain)
                .join(Company, col(Company.id) == Contact.company_id, isouter=True)
                .where(Contact.account_id == account.id)
            )
            if not include_deleted:
                query = query.where(col(Contact.deleted_at).is_(None))
            rows = session.exec(query.order_by(col(Contact.id))).all()
            return [contact_json(session, c, company, include_deleted) for c, company in rows]

    def events(self, slug: str, limit: int = 50) -> list[dict[str, Any]]:
        with self._read() as session:
            account = self._account(session, slug)
            rows = session.exec(
                select(CaptureEvent)
                .where(CaptureEvent.account_id == account.id)
                .order_by(col(CaptureEvent.received_at).desc(), col(CaptureEvent.id).desc())
                .limit(limit)
            ).all()
            return [
                {
                    "id": e.id,
                    "received_at": e.received_at.isoformat(),
                    "protocol": e.protocol,
                    "mail_from": e.mail_from,
                    "rcpt": e.rcpt,
                    "kind": e.kind,
                    "message_id": e.message_id,
                    "subject": e.subject,
                    "decision": e.decision,
                    "reason": e.reason,
                    "smtp_reply": e.smtp_reply,
                    "engagement_id": e.engagement_id,
                    "trace": json.loads(e.trace_json),
                    "warnings": json.loads(e.warnings_json),
                    "authentication": (
                        json.loads(e.authentication_json) if e.authentication_json else None
                    ),
                }
                for e in rows
            ]

    def tombstone(self, account_id: int, address: str) -> None:
        with self._write() as session:
            _insert_ignore(
                session,
                Tombstone,
                {
                    "account_id": account_id,
                    "address_hash": tombstone_hash(account_id, address),
                    "created_at": utcnow(),
                },
                ["account_id", "address_hash"],
            )


def contact_json(session: Session, contact: Contact, company: str | None,
                 include_deleted: bool = False) -> dict[str, Any]:  # fmt: skip
    """The contacts JSON of DESIGN.md (`contacts list --json`, the read API)."""
    extra = session.exec(
        select(ContactAddress.address)
        .where(ContactAddress.contact_id == contact.id)
        .order_by(col(ContactAddress.id))
    ).all()
    result: dict[str, Any] = {
        "id": contact.id,
        "name": contact.name,
        "addresses": [contact.primary_address, *extra],
        "company": company,
        "created_by": contact.created_by,
        **profiles.profile_json(contact),  # job_title, company_name, phone, website, set_by
    }
    if include_deleted:
        deleted = contact.deleted_at
        result["deleted_at"] = deleted.isoformat() if deleted else None
    return result


def find_contact(session: Session, account_id: int, address: str) -> int | None:
    """Primary address first; then an additional one (shared: the oldest contact)."""
    session.flush()  # as session.exec would: contacts added in this session count
    return contact_ids(session.connection(), account_id, [address]).get(address)


def _engagement_values(
    engagement_id: str, account_id: int, key: str, draft: EngagementDraft
) -> dict[str, Any]:
    email = draft.email
    return {
        "id": engagement_id,
        "account_id": account_id,
        "dedupe_key": key,
        "content_hash": draft.content_hash,
        "kind": draft.kind.value,
        "direction": draft.direction.value,
        "owner_user_id": draft.owner_user_id,
        "subject": email.subject,
        "occurred_at": email.occurred_at,
        "message_id": email.message_id,
        "in_reply_to": email.in_reply_to,
        "references_text": " ".join(email.references),
        "from_address": email.sender.address if email.sender else None,
        "from_name": email.sender.name if email.sender else None,
        "body_text": email.body_text,
        "note": draft.note,
        "thread_id": draft.thread_id,
        "sharing": draft.sharing.value,
        "created_at": utcnow(),
        "subject_hash": draft.subject_hash,
    }


def _clean_address(address: str) -> str:
    address = canonical_address(address)  # lower case, one form for an IDN domain
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in address):
        raise StoreError(f"{address!r} is not an email address")
    return address


__all__ = ["RecordResult", "Store", "StoreError", "StoreUnavailable", "new_id"]
