"""Per-locale choices for the cloud providers: the ASR language and keyword hints, the TTS voice.

The offline default speaks English with one piper voice whatever the locale; these settings
matter when Deepgram or OpenAI TTS are configured. An unknown locale falls back to its
language, then to en-US, so a caller is never refused for an accent we did not list.
"""

from __future__ import annotations

from dataclasses import dataclass

# Words a support call must hear right: Deepgram boosts them (keyterm prompting).
SUPPORT_KEYTERMS = ("PIN", "order number", "refund", "return", "warranty", "cancel", "agent")


@dataclass(frozen=True)
class Dialect:
    locale: str
    language: str  # the ASR language code (Deepgram `language`, Whisper's two letters)
    openai_voice: str  # OpenAI `audio.speech` voice
    keyterms: tuple[str, ...] = SUPPORT_KEYTERMS


DIALECTS: dict[str, Dialect] = {
    d.locale: d
    for d in (
        Dialect("en-US", "en-US", "alloy"),
        Dialect("en-GB", "en-GB", "fable", (*SUPPORT_KEYTERMS, "postcode")),
        Dialect("en-AU", "en-AU", "sage", (*SUPPORT_KEYTERMS, "postcode")),
        Dialect("en-IN", "en-IN", "shimmer"),
        Dialect("es-ES", "es", "nova", ("PIN", "número de pedido", "devolución", "garantía", "agente")),
        Dialect("fr-FR", "fr", "coral", ("PIN", "numéro de commande", "remboursement", "garantie", "conseiller")),
        Dialect("de-DE", "de", "onyx", ("PIN", "Bestellnummer", "Rückgabe", "Garantie", "Mitarbeiter")),
    )
}


def dialect_for(locale: str) -> Dialect:
    """The dialect for a BCP 47 tag: exact match, then same language, then en-US."""
    if locale in DIALECTS:
        return DIALECTS[locale]
    language = locale.split("-")[0].lower()
    for dialect in DIALECTS.values():
        if dialect.locale.split("-")[0].lower() == language:
            return dialect
    return DIALECTS["en-US"]
