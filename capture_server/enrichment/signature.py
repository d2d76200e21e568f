"""Signature parsing: name, job title, company, phone and website from the end of a body.

Pure and bounded: plain string operations only (no regular expression of ours sees the text),
at most MAX_LINES short lines reach phonenumbers. The caller decides whose signature it is
(only an external sender's: the contact) and what the confidences mean (see store/profiles.py).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import phonenumbers

from capture_server.pipeline.message import Mailbox

FIELDS = ("name", "job_title", "company_name", "phone", "website")
MAX_LINES = 10  # a signature is short: the lines read after the sign-off or separator
MAX_LINE_CHARS = 200  # longer lines are prose, not a signature
MAX_BODY_CHARS = 64 * 1024  # of the body read: the signature is near its end

# Sign-offs that end the message proper: the signature follows. Compared casefolded, without
# trailing punctuation. A data table: add a language by adding its phrases.
SIGN_OFFS: dict[str, tuple[str, ...]] = {
    "en": ("best regards", "kind regards", "warm regards", "regards", "best wishes", "best",
           "cheers", "thanks", "thank you", "many thanks", "sincerely", "yours sincerely",
           "yours truly", "all the best", "thanks and regards", "with best regards"),
    "de": ("mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße",
           "freundliche grüsse", "viele grüße", "viele grüsse", "beste grüße", "beste grüsse",
           "liebe grüße", "liebe grüsse", "gruß", "gruss", "grüße", "grüsse", "mfg", "vg", "lg"),
    "fr": ("cordialement", "bien cordialement", "bien à vous", "salutations",
           "meilleures salutations", "bonne journée", "amicalement", "merci"),
    "es": ("saludos", "saludos cordiales", "un saludo", "atentamente", "un cordial saludo",
           "gracias", "muchas gracias"),
    "nl": ("met vriendelijke groet", "met vriendelijke groeten", "vriendelijke groet",
           "vriendelijke groeten", "groeten", "groet", "hartelijke groet", "mvg"),
    "sv": ("med vänlig hälsning", "med vänliga hälsningar", "vänliga hälsningar",
           "vänlig hälsning", "hälsningar", "mvh", "tack"),
}  # fmt: skip
_SIGN_OFFS = frozenset(phrase for phrases in SIGN_OFFS.values() for phrase in phrases)

# Lines that start quoted text or a quoted original: nothing below them is the sender's.
_QUOTE_ENDINGS = ("wrote:", "schrieb:", "a écrit :", "a écrit:", "escribió:", "schreef:",
                  "skrev:", "kirjoitti:", "ha scritto:")  # fmt: skip
_HEADER_KEYS = ("from:", "von:", "de:", "de :", "van:", "från:", "da:")


def _words_of(text: str) -> list[str]:
    return text.split()


# Words of job titles, casefolded; a line holding one is a title.
TITLE_WORDS = frozenset(
    _words_of("""ceo cto cfo coo cio cmo vp svp evp founder co-founder cofounder owner partner
    president
    director manager head lead chief officer engineer developer designer consultant analyst
    specialist executive representative associate architect administrator coordinator
    assistant advisor sales marketing account accounts procurement purchasing buyer
    recruiter counsel attorney editor
    geschäftsführer geschäftsführerin leiter leiterin vertrieb einkauf einkäufer einkäuferin
    berater beraterin inhaber inhaberin vorstand prokurist referent referentin
    directeur directrice responsable ingénieur gérant gérante chef commercial commerciale
    acheteur acheteuse président présidente chargé chargée conseiller conseillère
    gerente director directora jefe jefa responsable comercial ingeniero ingeniera
    presidente asesor asesora compras ventas
    directeur eigenaar verkoop inkoop adviseur medewerker manager bedrijfsleider
    vd chef säljare säljchef inköpare inköpschef ansvarig konsult grundare ägare""")
)
# Legal forms: a line ending in one names a company.
COMPANY_SUFFIXES = frozenset(
    _words_of("""gmbh ag kg ohg ug se inc inc. incorporated ltd ltd. limited llc llp plc corp corp.
    corporation co co. sa s.a. sas s.a.s. sarl s.a.r.l. sl s.l. slu bv b.v. nv n.v. ab oy
    as a/s aps spa s.p.a. srl s.r.l. kk pty gbr e.k. e.v.""")
)
_PHONE_LABELS = ("tel", "phone", "mobile", "mob", "cell", "direct", "office", "t:", "m:", "p:",
                 "tél", "portable", "telefon", "handy", "mobil", "teléfono", "telefono", "móvil",
                 "movil", "telefoon", "mobiel", "tfn", "telefonnummer")  # fmt: skip
_FAX_LABELS = ("fax", "telefax", "f:")
_URL_STARTS = ("http://", "https://", "www.")

# Lower-case words inside names: Pieter de Vries, Ursula von der Leyen.
_PARTICLES = frozenset({"de", "van", "von", "der", "den", "da", "di", "del", "la", "le", "du"})

# ccTLDs whose region code differs from the upper-cased TLD.
_TLD_REGIONS = {"uk": "GB", "eu": None}


@dataclass(frozen=True)
class SignatureField:
    field: str  # one of FIELDS
    value: str
    confidence: float  # 0..1


@dataclass(frozen=True)
class Signature:
    fields: tuple[SignatureField, ...]
    marker: str  # what started it: "-- " or the sign-off line

    def get(self, name: str) -> SignatureField | None:
        return next((f for f in self.fields if f.field == name), None)


def region_for(domain: str) -> str | None:
    """The phone region a sender's ccTLD suggests (example.de → DE); None for .com and such."""
    tld = domain.rstrip(".").rpartition(".")[2].lower()
    if len(tld) != 2:
        return None
    region = _TLD_REGIONS.get(tld, tld.upper())
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _own_lines(body: str) -> list[str]:
    """The body's lines above any quoted text or quoted original."""
    lines = body[:MAX_BODY_CHARS].splitlines()
    for index, line in enumerate(lines):
        text = _fold(line)
        if text.startswith(">") or text.endswith(_QUOTE_ENDINGS):
            return lines[:index]
        if text.startswith("-----") and any(c.isalpha() for c in text):
            return lines[:index]  # -----Original Message----- and its translations
        if len(text) >= 10 and set(text) == {"_"}:
            return lines[:index]  # Outlook's line of underscores
        if text.startswith(_HEADER_KEYS):
            following = next((_fold(n) for n in lines[index + 1 : index + 4] if n.strip()), "")
            if ":" in following[:25]:
                return lines[:index]  # a From:/Sent: header block of a quoted original
    return lines


def _is_sign_off(line: str) -> bool:
    text = _fold(line).rstrip(",.!:;-– ")
    return text in _SIGN_OFFS


def _block(lines: list[str]) -> tuple[list[str], str] | None:
    """The signature's lines and what started them: the last "-- " or sign-off line."""
    start = None
    marker = ""
    for index, line in enumerate(lines):
        if line.rstrip("\r") in ("-- ", "--"):
            start, marker = index, "-- "
        elif _is_sign_off(line):
            start, marker = index, line.strip()
    if start is None:
        return None
    block = [line.strip() for line in lines[start + 1 :] if line.strip()]
    if not block or len(block) > MAX_LINES + 4:
        return None  # nothing, or prose after the "sign-off": not a signature
    return block[:MAX_LINES], marker


def _words(line: str) -> list[str]:
    return [w.strip(",.|()") for w in line.replace("|", " ").replace("/", " ").split()]


def _looks_like_name(line: str) -> bool:
    words = line.split()
    if not 1 <= len(words) <= 4 or len(line) > 60:
        return False
    for word in words:
        core = word.replace("-", "").replace("'", "").replace("’", "").rstrip(".")
        if not core or not core.isalpha() or not (word[0].isupper() or word in _PARTICLES):
            return False
    return not _is_title(line) and not _is_company(line)


def _is_title(line: str) -> bool:
    return any(_fold(word) in TITLE_WORDS for word in _words(line))


def _is_company(line: str) -> bool:
    words = _words(line)
    return bool(words) and _fold(words[-1]) in COMPANY_SUFFIXES


def _matches_domain(line: str, domain: str) -> bool:
    """ "Acme Corp" for acme.com: the company's name is its domain's first label."""
    labels = domain.split(".")
    label = labels[-3] if len(labels) > 2 and len(labels[-2]) <= 3 else labels[-2] if len(
        labels) >= 2 else ""  # fmt: skip
    letters = "".join(c for c in _fold(line) if c.isalnum())
    return len(label) >= 3 and letters.startswith(label.replace("-", ""))


def _phones(line: str, region: str | None) -> list[str]:
    found = []
    matcher = phonenumbers.PhoneNumberMatcher(line, region or "ZZ")
    for match in matcher:
        if phonenumbers.is_valid_number(match.number):
            found.append(
                phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            )
    return found


def _website(line: str) -> str | None:
    for word in line.split():
        token = word.strip("<>()[],;").rstrip(".")
        lower = token.lower()
        if "@" in token or "." not in token:
            continue
        if lower.startswith(_URL_STARTS):
            return token if lower.startswith("http") else "https://" + token
    return None


def parse_signature(body: str, sender: Mailbox, region: str | None = None) -> Signature | None:
    """The sender's signature at the end of body (above quoted text), or None.

    region: for phone numbers written without +country (None: only international ones).
    """
    own = _own_lines(body)
    found = _block(own)
    if found is None:
        return None
    block, marker = found
    fields: dict[str, SignatureField] = {}

    def put(field: str, value: str, confidence: float) -> None:
        if field not in fields and value:
            fields[field] = SignatureField(field, value[:MAX_LINE_CHARS], round(confidence, 2))

    display = _fold(sender.name or "")
    local = _fold(sender.key.partition("@")[0]).replace(".", " ").replace("_", " ")
    rest: list[str] = []
    for position, raw in enumerate(block):
        line = raw[:MAX_LINE_CHARS]
        text = _fold(line)
        if "@" in line and " " not in line.strip():
            continue  # an email address alone
        if text.startswith(_FAX_LABELS):
            continue
        digits = sum(c.isdigit() for c in line)
        if digits >= 6:
            labelled = text.startswith(_PHONE_LABELS)
            for number in _phones(line, region):
                put("phone", number, 0.95 if labelled or digits * 2 >= len(line) else 0.75)
            continue
        website = _website(line)
        if website is not None:
            own_site = sender.domain.removeprefix("www.") in website.lower()
            put("website", website, 0.95 if own_site else 0.8)
            continue
        if position == 0 and _looks_like_name(line):
            if text in (display, local):
                put("name", line, 0.95)
            elif display and len(line.split()) == 1 and display.split()[0] == text:
                pass  # a first name alone: the From name already says more
            elif len(line.split()) == 1:
                put("name", line, 0.4)
            elif display and all(part in display for part in text.split()):
                put("name", line, 0.9)
            else:
                put("name", line, 0.7 if marker != "-- " else 0.8)
            continue
        rest.append(line)
    for line in rest:
        for separator in (" | ", " - ", " – ", ", ", " at ", " bei ", " chez "):
            title, found_sep, company = line.partition(separator)
            if found_sep and _is_title(title) and not _is_title(company) and company.strip():
                put("job_title", title.strip(), 0.85)
                strong = _is_company(company) or _matches_domain(company, sender.domain)
                put("company_name", company.strip(), 0.9 if strong else 0.6)
                break
        else:
            if _is_company(line):
                put("company_name", line, 0.9)
            elif _is_title(line):
                put("job_title", line, 0.85)
            elif _matches_domain(line, sender.domain):
                put("company_name", line, 0.85)
            elif "job_title" not in fields and "company_name" not in fields and len(line) <= 60:
                put("job_title", line, 0.4)  # an unknown line right after the name: a guess
    if not fields:
        return None
    return Signature(tuple(fields[name] for name in FIELDS if name in fields), marker)


__all__ = ["FIELDS", "Signature", "SignatureField", "parse_signature", "region_for"]
