"""The VAD settings a call is heard with, chosen by its input rate: a phone line's 8 kHz speech
(300-3400 Hz, μ-law) has lost what silero listens for above 4 kHz, so it gets the phone settings
(common/config_phone.py); every wider call keeps the 16 kHz ones, unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Settings
from deployments.vad.engine import SAMPLE_RATE, Endpointer, VADStream

NARROWBAND_MAX_RATE = 8000  # input at this rate or under holds nothing above 4 kHz


@dataclass(frozen=True)
class HearingProfile:
    name: str
    vad_rate: int  # silero's model: 16000, or 8000 on every second sample of the 16 kHz stream
    vad_threshold: float
    vad_release: float | None  # None: the Endpointer's own (0.15 under the threshold)

    def endpointer(self, stream: VADStream, settings: Settings, **kw) -> Endpointer:
        return Endpointer(
            stream, threshold=self.vad_threshold, release=self.vad_release, min_speech_ms=settings.min_speech_ms, **kw
        )


def hearing_profile(settings: Settings, input_rate: int) -> HearingProfile:
    if input_rate <= NARROWBAND_MAX_RATE:
        return HearingProfile(
            "phone", settings.phone_vad_rate, settings.phone_vad_threshold, settings.phone_vad_release
        )
    return HearingProfile("wideband", SAMPLE_RATE, settings.vad_threshold, None)
