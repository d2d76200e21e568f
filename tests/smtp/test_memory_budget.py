"""Big messages take turns for memory (smtp/budget.py): the budget itself, then the daemon."""

from __future__ import annotations

import asyncio
import json
import random
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from capture_server.smtp.budget import MemoryBudget
from tests.conftest import Cli, make_account, open_transaction, start_daemon

MIB = 1024 * 1024


async def _run(budget: MemoryBudget, name: str, size: int, log: list[str], hold: float) -> None:
    async with budget.reserve(size):
        log.append(f"+{name}")
        assert budget.in_use <= 10 * MIB or budget.in_use == min(size, 10 * MIB)
        await asyncio.sleep(hold)
        log.append(f"-{name}")


def test_big_messages_wait_first_come_first_served() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(lambda: 10 * MIB, small=MIB)
        log: list[str] = []
        tasks = []
        for name, size in (("a", 6 * MIB), ("b", 6 * MIB), ("c", 3 * MIB), ("d", 2 * MIB)):
            tasks.append(asyncio.create_task(_run(budget, name, size, log, 0.02)))
            await asyncio.sleep(0)  # in this order
        await asyncio.gather(*tasks)
        assert budget.in_use == 0
        return log

    # b does not fit beside a; c would, but waits behind b (no overtaking); c fits beside b.
    log = asyncio.run(main())
    assert log.index("+b") > log.index("-a")
    assert log.index("+c") > log.index("+b")  # not before b, although it would have fit
    assert log.index("+d") > log.index("+b")


def test_small_messages_never_wait_and_a_huge_one_runs_alone() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(lambda: 10 * MIB, small=MIB)
        log: list[str] = []
        huge = asyncio.create_task(_run(budget, "huge", 40 * MIB, log, 0.05))
        await asyncio.sleep(0)
        assert budget.in_use == 10 * MIB  # capped at the budget: it runs, alone
        big = asyncio.create_task(_run(budget, "big", 2 * MIB, log, 0.01))
        small = asyncio.create_task(_run(budget, "small", MIB, log, 0.01))
        await asyncio.gather(huge, big, small)
        assert budget.in_use == 0
        return log

    log = asyncio.run(main())
    assert log.index("-small") < log.index("-huge")  # small ones pass the queue
    assert log.index("+big") > log.index("-huge")


def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(lambda: 10 * MIB, small=MIB)
        log: list[str] = []
        first = asyncio.create_task(_run(budget, "first", 8 * MIB, log, 0.05))
        await asyncio.sleep(0)
        gone = asyncio.create_task(_run(budget, "gone", 8 * MIB, log, 0.01))
        after = asyncio.create_task(_run(budget, "after", 2 * MIB, log, 0.01))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client hung up while it waited
        await asyncio.gather(first, after)
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert budget.in_use == 0 and not budget._waiting
        return log

    log = asyncio.run(main())
    assert "+gone" not in log
    # "after" waited behind "gone" only; with gone cancelled it fits beside "first".
    assert log.index("+after") < log.index("-first")


def test_the_limit_is_read_live() -> None:
    async def main() -> list[str]:
        limit = [8 * MIB]
        budget = MemoryBudget(lambda: limit[0], small=MIB)
        log: list[str] = []
        first = asyncio.create_task(_run(budget, "first", 3 * MIB, log, 0.05))
        await asyncio.sleep(0)
        limit[0] = 4 * MIB  # SIGHUP lowered it: 3 + 3 MiB no longer fit
        second = asyncio.create_task(_run(budget, "second", 3 * MIB, log, 0.01))
        await asyncio.sleep(0)
        assert budget._waiting
        await asyncio.gather(first, second)
        return log

    assert asyncio.run(main()) == ["+first", "-first", "+second", "-second"]


def _big_message(number: int, size: int) -> bytes:
    """A BCC'd proposal with an attachment: `size` bytes on the wire (base64)."""
    message = EmailMessage()
    message["From"] = "Rita Rep <rita@acme.test>"
    message["To"] = "Carl Customer <carl@globex.test>"
    message["Subject"] = f"Quarterly report {number}"
    message["Message-ID"] = f"<big-{number}@acme.test>"
    message["Date"] = "Tue, 03 Nov 2026 09:15:00 +0000"
    message.set_content("The report is attached.")
    message.add_attachment(
        random.Random(number).randbytes(size * 3 // 4), "application", "pdf", filename="q3.pdf"
    )
    return message.as_bytes(policy=SMTP)


def test_daemon_processes_big_messages_in_turns(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    """Four 2 MiB messages end at once with room for one: every one is logged, in turns."""
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, message_memory_bytes=str(3 * MIB))
    try:
        opened = [open_transaction(daemon.smtp_port, account.bcc) for _ in range(4)]
        for number, (sock, _) in enumerate(opened):
            sock.sendall(_big_message(number, 2 * MIB))
        for sock, _ in opened:  # every message ends together: they all want memory now
            sock.sendall(b".\r\n")
        replies = [reader.readline() for _, reader in opened]
        for sock, _ in opened:
            sock.close()
        assert all(reply.startswith(b"250 2.0.0 queued as eng_") for reply in replies), replies
        lines = daemon.log().splitlines()
        waits = [json.loads(line) for line in lines if "memory_budget_wait" in line]
        assert len(waits) >= 2, daemon.log()[-3000:]
        assert all(wait["in_use"] + wait["size"] > 3 * MIB for wait in waits)
        listed = cli("engagements", "list", account.slug, "--json").splitlines()
        assert len(listed) == 4
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()


def test_a_client_gone_while_waiting_leaves_the_budget_whole(
    database_url: str, tmp_path: Path, cli: Cli
) -> None:
    account = make_account(cli)
    daemon = start_daemon(database_url, tmp_path, message_memory_bytes=str(2 * MIB))
    try:
        first, first_reader = open_transaction(daemon.smtp_port, account.bcc)
        quitter, _ = open_transaction(daemon.smtp_port, account.bcc)
        first.sendall(_big_message(1, 8 * MIB))  # runs alone (capped at the budget), a while
        quitter.sendall(_big_message(2, 2 * MIB))
        first.sendall(b".\r\n")
        quitter.sendall(b".\r\n")
        deadline = time.monotonic() + 10
        while "memory_budget_wait" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.005)
        quitter.close()  # hangs up before its reply: it still has the message, sends it again
        assert "memory_budget_wait" in daemon.log()
        assert first_reader.readline().startswith(b"250 2.0.0 queued as eng_")
        first.close()
        # The budget is whole again: a third big message goes through at once.
        third, third_reader = open_transaction(daemon.smtp_port, account.bcc)
        third.sendall(_big_message(3, 2 * MIB) + b".\r\n")
        assert third_reader.readline().startswith(b"250 2.0.0 queued as eng_")
        third.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            subjects = cli("engagements", "list", account.slug, "--json").splitlines()
            if len(subjects) >= 2:
                break
            time.sleep(0.1)
        ids = {json.loads(line)["message_id"] for line in subjects}
        assert "<big-1@acme.test>" in ids and "<big-3@acme.test>" in ids
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
