"""Sender authentication: does the message prove it came from its From domain?

Two halves.  The I/O half, :func:`verify_message`, gathers evidence before the pipeline
runs: SPF (pyspf), every DKIM signature and the ARC chain (dkimpy) and DMARC (our own
:mod:`.dmarc`), all DNS through dnspython with a time-out, blocking libraries in worker
threads.  The pure half, :func:`check_structure` and :func:`decide`, judges.

Decisions worth knowing:

* **No DMARC record.** ``aligned`` is still computed, with the RFC's relaxed defaults; in
  ``enforce`` mode an aligned SPF or DKIM pass is required whatever the published policy
  (``p=none`` included): the question is "did this come from the rep's domain?", not
  "what does the domain owner ask receivers to do?".  The policy is reported only.
* **``l=`` signatures** that cover less than the whole (canonicalised) body verify
  cryptographically but are recorded as ``dkim=policy`` ("l= covers N of M body
  bytes"), which never counts for alignment: appended text is unauthenticated.
* **rsa-sha1** signatures are ``permerror`` (RFC 8301); signatures that do not sign
  From are ``permerror``; at most 8 signatures are verified.
* **ARC** is validated and reported but never grants a pass.
* **Authentication-Results** headers are ignored unless the connecting client is a
  trusted relay and the header's authserv-id is trusted; then the topmost such header
  is used (source ``trusted_upstream``).
* **From** is parsed with ``email.policy.default``; ``from_address``/``from_domain`` in
  the results are the real mailbox (never the display name) and attribution must use them.
"""

from .checks import MAX_DKIM_SIGNATURES
from .decide import MODES, AuthVerdict, decide
from .dmarc import DmarcRecord, domains_aligned, parse_dmarc_record
from .dnsclient import DnsCache, DnsConfig
from .domain_check import COMMON_DKIM_SELECTORS, check_domain, parse_spf_record
from .psl import organizational_domain
from .results import AuthenticationResults, MethodResult, parse_authentication_results
from .structure import FromAddress, StructuralProblem, check_structure, parse_from
from .verify import strip_untrusted_authentication_results, verify_message

__all__ = [
    "COMMON_DKIM_SELECTORS",
    "MAX_DKIM_SIGNATURES",
    "MODES",
    "AuthVerdict",
    "AuthenticationResults",
    "DmarcRecord",
    "DnsCache",
    "DnsConfig",
    "FromAddress",
    "MethodResult",
    "StructuralProblem",
    "check_domain",
    "check_structure",
    "decide",
    "domains_aligned",
    "organizational_domain",
    "parse_authentication_results",
    "parse_dmarc_record",
    "parse_from",
    "parse_spf_record",
    "strip_untrusted_authentication_results",
    "verify_message",
]
