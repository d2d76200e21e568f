"""SPF and DMARC from a warm DNS cache run on the event loop (verify._cached_or_threaded):
the same results as with the network, no worker thread; a look-up the cache lacks sends the
check to a thread with the real resolver, also when pyspf swallowed the miss."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from capture_server.authentication import AuthenticationResults, DnsCache, DnsConfig
from capture_server.authentication.dnsclient import Resolver
from capture_server.authentication.verify import verify_message

from .test_verify import make_message
from .zoneserver import ZoneServer


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor (asyncio.to_thread's), counting what it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def verify(
    raw: bytes, dns: DnsConfig, cache: DnsCache | None, ip: str = "192.0.2.10"
) -> tuple[AuthenticationResults, int]:
    """The results, and how many look-up threads the check took."""
    executor = CountingExecutor()

    async def run() -> AuthenticationResults:
        asyncio.get_running_loop().set_default_executor(executor)
        return await verify_message(
            raw, mail_from="rep@example.com", helo="mail.example.com", client_ip=ip,
            authserv_id="capture.test", dns=dns, cache=cache,
        )  # fmt: skip

    try:
        return asyncio.run(run()), executor.submitted
    finally:
        executor.shutdown()


def spf_of(results: AuthenticationResults) -> tuple[str, str]:
    [spf] = results.method("spf")
    return spf.result, spf.detail


def test_a_warm_cache_answers_spf_and_dmarc_without_a_thread_or_the_network(
    zone: ZoneServer, dns_config: DnsConfig
) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    raw = make_message()
    cache = DnsCache()
    cold, cold_threads = verify(raw, dns_config, cache)
    assert cold_threads == 2  # SPF and DMARC, each in a thread (nothing signed: no DKIM)
    assert cold.aligned and spf_of(cold)[0] == "pass"
    zone.timeout("example.com")  # the network is gone: only the cache can answer now
    zone.timeout("_dmarc.example.com")
    asked = len(zone.queries)
    warm, warm_threads = verify(raw, dns_config, cache)
    assert warm_threads == 0
    assert len(zone.queries) == asked
    assert warm.to_header() == cold.to_header()
    without_cache, _ = verify(raw, dns_config, None)  # and the network really is gone
    assert spf_of(without_cache)[0] == "temperror"


def test_a_look_up_the_cache_lacks_sends_the_check_to_a_thread(
    zone: ZoneServer, dns_config: DnsConfig
) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 include:partner.test -all")
    zone.txt("partner.test", "v=spf1 ip4:198.51.100.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    raw = make_message()
    cache = DnsCache()
    verify(raw, dns_config, cache, ip="192.0.2.10")  # passes before include: not looked up
    assert ("partner.test", "TXT") not in zone.queries
    results, threads = verify(raw, dns_config, cache, ip="198.51.100.7")
    assert threads == 1  # SPF needed partner.test; DMARC came from the cache
    assert spf_of(results)[0] == "pass"
    assert ("partner.test", "TXT") in zone.queries


def test_a_miss_pyspf_swallows_still_sends_the_check_to_a_thread(
    zone: ZoneServer, dns_config: DnsConfig
) -> None:
    """pyspf ignores any error while it fetches an exp= explanation: the cached result would
    lack the domain's explanation."""
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.com")
    zone.txt("why.example.com", "%{i} is not a mail server of example.com")
    cache = DnsCache()
    Resolver(dns_config, cache).txt("example.com")  # only the record itself is cached
    raw = make_message()
    results, threads = verify(raw, dns_config, cache, ip="203.0.113.5")
    assert threads == 2  # SPF (the explanation) and DMARC (nothing cached)
    assert spf_of(results) == spf_of(verify(raw, dns_config, None, ip="203.0.113.5")[0])
    assert spf_of(results) == ("fail", "203.0.113.5 is not a mail server of example.com")
