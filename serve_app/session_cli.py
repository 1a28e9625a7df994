"""`voice-agent session say ID TEXT` and `voice-agent session close ID`: the session API
(serve_app/session_api.py) from a shell, in a driver of its own attached to the running
cluster; the call's state in the store (VOICE_STORE_URL or VOICE_STORE_PATH) names its actor,
on whichever node that is. Exit codes: 0 sent, 1 no live call (or its actor did not answer),
2 invalid configuration.
"""

from __future__ import annotations

import argparse
import sys

ANSWER_S = 10.0  # the actor queues the command and answers at once; longer means it is unreachable


def add_parser(sub) -> None:
    session = sub.add_parser("session", help="steer a live call: the session API")
    actions = session.add_subparsers(dest="action", required=True)
    say = actions.add_parser("say", help="speak TEXT on the call as it is (no dialogue engine)")
    say.add_argument("id", help="the call's session id (session.started)")
    say.add_argument("text")
    close = actions.add_parser("close", help="end the call in order: speech stopped, state saved, session.ended")
    close.add_argument("id", help="the call's session id (session.started)")
    close.add_argument("--reason", default="closed", help="session.ended's reason (default: closed)")
    for action in (say, close):
        action.add_argument("--address", help="Ray address (default: the local head, VOICE_RAY_PORT)")
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from common.config import ConfigError, load_settings
    from serve_app import local_ray

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    local_ray.cli_env()
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    from serve_app.session_api import session_actor

    ray.init(address=args.address or f"127.0.0.1:{settings.ray_port}", namespace="serve", log_to_driver=False)
    try:
        actor = session_actor(args.id)
        sent = actor.say.remote(args.text) if args.action == "say" else actor.close.remote(args.reason)
        ray.get(sent, timeout=ANSWER_S)
    except (LookupError, ValueError) as exc:  # ValueError: the named actor is gone (being replaced?)
        print(f"voice-agent: no live call {args.id}: {exc}", file=sys.stderr)
        return 1
    except (RayActorError, GetTimeoutError) as exc:
        print(f"voice-agent: call {args.id}'s session actor did not answer ({exc!r}): try again", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    print(f"{args.action} sent to call {args.id}")
    return 0
