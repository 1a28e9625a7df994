"""One package per Serve deployment or Ray actor: a pure engine beside its thin wrapper."""

from deployments._loopback import keep_replica_grpc_on_loopback
from serve_app.pii import install_log_masking

keep_replica_grpc_on_loopback()
install_log_masking()  # every process that runs our code masks PII in its logs
