"""Secrets reach Serve replicas through Ray's GCS key-value store, not the runtime_env.

An application's `runtime_env.env_vars` are part of its deployed config: `serve config`,
`serve status`, the dashboard and the controller's details show them to whoever can read
those. So the deployer (`voice-agent up` and the test fixture, both via `cluster.deploy`)
leaves secret variables out of the config and puts them in the KV store under the namespace
`voice-secrets`; in a replica, `Settings` reads a secret its own environment lacks from there
(`KVSecretsSource`, after the environment and `.env`). Other VOICE_* settings still travel in
the runtime_env. A secret is any variable named *_API_KEY, *_TOKEN, *_SECRET, *_SECRET_KEY or *_PASSWORD.

Whoever can talk to the cluster's GCS can read the KV store, as they could read a worker's
environment before: Ray's token authentication keeps others out.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import PydanticBaseSettingsSource

NAMESPACE = "voice-secrets"
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_SECRET_KEY")
KNOWN = (
    "VOICE_DEEPGRAM_API_KEY",
    "DEEPGRAM_API_KEY",
    "VOICE_OPENAI_API_KEY",
    "OPENAI_API_KEY",
    "VOICE_ADMIN_TOKEN",
    "LANGFUSE_SECRET_KEY",
)


def is_secret(name: str) -> bool:
    return name.upper().endswith(SECRET_SUFFIXES)


def split_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) variables."""
    plain = {k: v for k, v in env.items() if not is_secret(k)}
    return plain, {k: v for k, v in env.items() if is_secret(k)}


def _kv():
    """Ray's internal KV in a process connected to a cluster, else None (a CLI, a unit test)."""
    if "ray" not in sys.modules:
        return None
    from ray.experimental import internal_kv

    return internal_kv if internal_kv._internal_kv_initialized() else None


def publish(secrets: Mapping[str, str]) -> None:
    """Store these secrets for the cluster's replicas; a known secret not given is removed,
    so a key taken out of the deployer's environment does not linger."""
    kv = _kv()
    if kv is None:
        raise RuntimeError("publishing secrets needs a connected Ray (ray.init first)")
    for name in sorted(set(KNOWN) | set(secrets)):
        if secrets.get(name):
            kv._internal_kv_put(name, secrets[name], overwrite=True, namespace=NAMESPACE)
        else:
            kv._internal_kv_del(name, namespace=NAMESPACE)


def fetch(names) -> dict[str, str]:
    """The stored secrets among `names`; {} outside a Ray process."""
    kv = _kv()
    if kv is None:
        return {}
    found = {}
    for name in names:
        value = kv._internal_kv_get(name, namespace=NAMESPACE)
        if value:
            found[name] = value.decode()
    return found


class KVSecretsSource(PydanticBaseSettingsSource):
    """Settings source: secret fields missing from the environment, read from the KV store."""

    def get_field_value(self, field, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        wanted: dict[str, str] = {}  # variable name -> the key the model validates
        for name, field in self.settings_cls.model_fields.items():
            alias = field.validation_alias
            names = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
            key = names[0] if names else name
            names = names or [f"VOICE_{name.upper()}"]
            if key in self.current_state or not any(is_secret(n) for n in names):
                continue  # set by the environment or .env, or not a secret
            wanted.update({n: key for n in names if is_secret(n)})
        state: dict[str, Any] = {}
        for variable, value in fetch(wanted).items():
            state.setdefault(wanted[variable], value)  # the first name in the field's choices wins
        return state
