"""One package per Serve deployment or Ray actor: a pure engine beside its thin wrapper."""

import logging
import os

from common.pii import install_log_masking
from deployments._loopback import keep_replica_grpc_on_loopback

keep_replica_grpc_on_loopback()
install_log_masking()  # every process that runs our code masks PII in its logs
# Ray leaves the root logger at WARNING: our INFO lines (turns, fallbacks) would vanish. The value
# is Settings.log_level (VOICE_LOG_LEVEL), validated at start-up; a bad one falls back to INFO here.
_level = os.environ.get("VOICE_LOG_LEVEL", "INFO").upper()
for _name in ("deployments", "serve_app"):
    logging.getLogger(_name).setLevel(_level if _level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
