"""Log set-up for the platform's own processes: PII masking and our loggers' level.

Called first in every deployment and actor constructor and in the `voice-agent` CLI, never on
import: a process that merely imports our code (a Locust run, a test, a benchmark) keeps its
logs as they are. Masking goes on the log record factory, so it covers every logger in the
process, Ray's and Serve's included, whoever logs.
"""

from __future__ import annotations

import logging
import os

from common.pii import mask_log_text

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def install_log_masking() -> None:
    """Mask every log record this process makes, whoever logs it (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_masks_pii", False):
        return

    def masked(*args, **kwargs):
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        clean = mask_log_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    masked._masks_pii = True
    logging.setLogRecordFactory(masked)


def log_masking_installed() -> bool:
    return getattr(logging.getLogRecordFactory(), "_masks_pii", False)


def mask_logs_in_this_process() -> None:
    """PII masking on, and our loggers at VOICE_LOG_LEVEL (idempotent). Ray leaves the root logger
    at WARNING, so our INFO lines (turns, fallbacks) would vanish. The value is Settings.log_level,
    validated at start-up; a bad one falls back to INFO here."""
    install_log_masking()
    level = os.environ.get("VOICE_LOG_LEVEL", "INFO").upper()
    for name in ("deployments", "serve_app"):
        logging.getLogger(name).setLevel(level if level in _LEVELS else "INFO")
