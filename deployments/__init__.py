"""One package per Serve deployment or Ray actor: a pure engine beside its thin wrapper."""

from deployments._loopback import keep_replica_grpc_on_loopback

keep_replica_grpc_on_loopback()
