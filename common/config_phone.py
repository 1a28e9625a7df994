"""How the platform hears a phone line, read with the rest of the settings (common/config.py builds
on this class). Chosen per call by its input rate, not by a switch: a call whose audio comes at
8 kHz (a carrier's μ-law stream, or a browser that says sample_rate=8000) is heard with these, every
other call with the 16 kHz ones (VOICE_VAD_THRESHOLD). Chosen from benchmarks/phone_hearing.py's
figures (README "Phone calls"): on a quiet phone line silero's 16 kHz model, fed the upsampled
narrowband audio, missed whole words (a phrase after a pause); its 8 kHz model hears them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings


class PhoneSettings(BaseSettings):
    # silero's 8 kHz model on the narrowband audio itself, or (16000) its 16 kHz model on the audio
    # upsampled as the listener does: the phone line heard as a browser's, as before the tuning.
    phone_vad_rate: Literal[8000, 16000] = 8000
    # A frame is speech at phone_vad_threshold and silence under phone_vad_release (the 16 kHz
    # settings: 0.15 under the threshold). 0.4: a noisy line's turn ends within ~10 ms of before.
    phone_vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    phone_vad_release: float = Field(default=0.4, gt=0, lt=1)

    @model_validator(mode="after")
    def _release_under_threshold(self) -> PhoneSettings:
        if self.phone_vad_release > self.phone_vad_threshold:
            raise ValueError("VOICE_PHONE_VAD_RELEASE must not exceed VOICE_PHONE_VAD_THRESHOLD")
        return self
