"""One package per Serve deployment or Ray actor: a pure engine beside its thin wrapper.

Log masking is not set up here: each deployment and actor calls common.logs.mask_logs_in_this_process()
first in its constructor, so importing this package changes no process's logging."""

from deployments._loopback import keep_replica_grpc_on_loopback

keep_replica_grpc_on_loopback()
