"""What the Gateway asks the ASR deployment: one utterance's audio and what the words are for.

The kind lets a loaded ASR replica tell the transcripts a turn waits on from the ones that only
show the caller what was heard so far, so it can serve the first and shed the second.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# final: the turn's transcript at the endpoint; ahead: a run-ahead's transcript at a pause, the
# turn's own when the caller stops there; partial: words shown while the caller still speaks.
AsrKind = Literal["final", "ahead", "partial"]


class AsrRequest(BaseModel):
    pcm16: bytes  # PCM s16le mono at 16 kHz, the whole utterance so far
    language: str = "en"  # two letters
    kind: AsrKind = "final"
    call_id: str = ""  # whose utterance: one partial per call is decoded at a time

    @classmethod
    def of(cls, pcm16: bytes, locale: str, kind: AsrKind = "final", call_id: str = "") -> AsrRequest:
        """The request for a call's audio in its locale ("en-GB" is heard as "en")."""
        return cls(pcm16=pcm16, language=locale.split("-")[0], kind=kind, call_id=call_id)


class AsrShed(RuntimeError):
    """The ASR replica dropped a partial transcript undecoded: it had a turn's audio to hear first,
    or the partial waited too long to still be news."""
