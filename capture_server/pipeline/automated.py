"""Subjects that machines write: auto-replies, out-of-office notes and bounces, in many languages.

Headers (Auto-Submitted, Precedence, ...) are checked first in filter.py; many mail systems send
auto-replies without them, so the subject is a second signal. Plain string operations only.
"""

from __future__ import annotations

# Case-folded phrases. A subject matches when it IS the phrase or starts with it followed by a
# separator (": <original subject>", " (Failure)", ...), so "Out of office next week" written
# by a person does not match.
AUTOMATED_SUBJECTS: tuple[str, ...] = (
    # English
    "out of office",
    "out of the office",
    "out of office autoreply",
    "out of office reply",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "away from the office",
    "undeliverable",
    "undelivered mail returned to sender",
    "undelivered mail",
    "delivery status notification",
    "delivery notification",
    "delivery failure",
    "delivery has failed",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "message not delivered",
    "returned mail",
    "failure notice",
    "warning: could not send message",
    "nondeliverable mail",
    # German
    "abwesenheitsnotiz",
    "automatische antwort",
    "abwesend",
    "unzustellbar",
    "nicht zustellbar",
    "unzustellbare nachricht",
    # French
    "réponse automatique",
    "absence du bureau",
    "message d'absence",
    "non remis",
    "échec de la remise",
    # Spanish, Portuguese
    "respuesta automática",
    "fuera de la oficina",
    "no se puede entregar",
    "resposta automática",
    "não é possível entregar",
    # Italian
    "risposta automatica",
    "fuori sede",
    "non recapitabile",
    # Dutch
    "automatisch antwoord",
    "afwezig",
    "onbestelbaar",
    # Nordic
    "autosvar",
    "automatiskt svar",
    "automatisk svar",
    "fraværende",
    "frånvarande",
    "automaattinen vastaus",
    "poissa toimistolta",
    "kan inte levereras",
    "kunne ikke leveres",
    # Polish, Czech, Turkish
    "automatyczna odpowiedź",
    "automatická odpověď",
    "otomatik yanıt",
)
_SEPARATORS = (":", " :", "：", " (", " -", " –", " [")


def automated_subject(subject: str) -> str | None:
    """The phrase that marks this subject as machine-written, or None."""
    text = " ".join(subject.casefold().split())
    for phrase in AUTOMATED_SUBJECTS:
        if text == phrase or (
            text.startswith(phrase) and text[len(phrase) :].startswith(_SEPARATORS)
        ):
            return phrase
    return None
