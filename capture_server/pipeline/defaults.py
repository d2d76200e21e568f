"""Default lists for the rules; each account can edit its own copy."""

from __future__ import annotations

# Local parts that name a role, a robot or a distribution list, never a person.
ROLE_LOCAL_PARTS = frozenset(
    {
        "abuse", "accounts", "admin", "alerts", "billing", "bounce", "bounces", "careers",
        "contact", "customerservice", "daemon", "do-not-reply", "donotreply", "do_not_reply",
        "feedback", "hello", "help", "helpdesk", "hostmaster", "hr", "info", "jobs",
        "mailer-daemon", "mailerdaemon", "marketing", "news", "newsletter", "no-reply",
        "no_reply", "noreply", "notification", "notifications", "office", "postmaster",
        "privacy", "sales", "security", "service", "support", "team", "unsubscribe",
        "webmaster",
    }
)  # fmt: skip

# Prefixes that mark robots whatever follows ("noreply-billing", "bounce+1234").
ROLE_PREFIXES = ("noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "bounce",
                 "mailer-daemon")  # fmt: skip

# Distribution lists on Cc ("procurement-list@", "all-hands@", a list server's domain):
# mail to them reaches many people, none of whom is the contact.
LIST_LOCAL_PARTS = frozenset({"all", "all-hands", "allhands", "all-staff", "everyone", "staff"})
LIST_SUFFIXES = ("-list", "-all", "-announce", "-group", "-team")
LIST_DOMAIN_LABELS = frozenset({"list", "lists", "groups", "googlegroups", "listserv"})

# Domains where anyone can have a mailbox: never a company.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com", "att.net", "btinternet.com", "comcast.net", "fastmail.com", "free.fr",
        "gmail.com", "gmx.at", "gmx.ch", "gmx.de", "gmx.net", "googlemail.com", "hey.com",
        "hotmail.co.uk", "hotmail.com", "hotmail.de", "hotmail.fr", "hotmail.it", "icloud.com",
        "interia.pl", "laposte.net", "libero.it", "live.com", "live.fr", "mac.com", "mail.com",
        "mail.ru", "me.com", "msn.com", "naver.com", "o2.pl", "orange.fr", "outlook.com",
        "outlook.de", "outlook.fr", "pm.me", "proton.me", "protonmail.com", "qq.com",
        "rediffmail.com", "sbcglobal.net", "seznam.cz", "t-online.de", "verizon.net", "web.de",
        "wp.pl", "yahoo.co.jp", "yahoo.co.uk", "yahoo.com", "yahoo.de", "yahoo.fr", "yandex.com",
        "yandex.ru", "ymail.com", "zoho.com", "163.com", "126.com",
    }
)  # fmt: skip


def is_role_address(address: str, role_local_parts: frozenset[str]) -> bool:
    local, _, domain = address.lower().rpartition("@")
    local = local.split("+", 1)[0]
    return (
        local in role_local_parts
        or local.startswith(ROLE_PREFIXES)
        or is_distribution_list(local, domain)
    )


def is_distribution_list(local: str, domain: str) -> bool:
    """A mailing list's address by its name or its host (lists.example.com,
    groups.example.com, googlegroups.com)."""
    return (
        local in LIST_LOCAL_PARTS
        or local.endswith(LIST_SUFFIXES)
        or ("." in domain and domain.split(".", 1)[0] in LIST_DOMAIN_LABELS)
    )
