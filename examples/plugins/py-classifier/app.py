"""A method classifier for wasmgate (world `classifier-plugin`) in Python.

Built with componentize-py. Works like wasmgate's default classifier: the
`methods` setting lists `{match, class, scopes}` entries; the most specific
matching pattern wins (an exact path beats every prefix, a longer prefix
beats a shorter one); a method no entry matches is `bearer` requiring the
`wildcard-scope` (default `wasmgate:all`), i.e. default deny.

Malformed settings fail every call with `invalid-config` (the gateway then
treats the method as needing the strictest authentication).
"""

import json
from typing import Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    AuthClass,
    CallInfo,
    Classification,
    PolicyError_InvalidConfig,
)

CLASSES = {
    "unauthenticated": AuthClass.UNAUTHENTICATED,
    "sandbox-secret": AuthClass.SANDBOX_SECRET,
    "dual-auth": AuthClass.DUAL_AUTH,
    "bearer": AuthClass.BEARER,
}
# Scopes are never checked for these classes, so listing some is a mistake.
NO_SCOPES = {AuthClass.UNAUTHENTICATED, AuthClass.SANDBOX_SECRET}


class ConfigError(Exception):
    """A malformed setting; becomes `invalid-config`."""


def json_setting(key: str, default):
    """A setting the host hands over as JSON text (lists, maps), or `default`."""
    raw = host.get_config(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigError(f"setting {key}: not valid JSON")


class Table:
    """The parsed `methods` table."""

    def __init__(self, methods, wildcard_scope: str):
        if not isinstance(methods, list):
            raise ConfigError("setting methods: must be a list")
        self.exact: Dict[str, Classification] = {}
        # (prefix, classification), longest prefix first.
        self.prefixes: List[Tuple[str, Classification]] = []
        seen = set()
        for i, entry in enumerate(methods):
            where = f"setting methods[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: must be a map")
            unknown = set(entry) - {"match", "class", "scopes"}
            if unknown:
                raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]}")
            pattern = entry.get("match")
            if not isinstance(pattern, str) or not pattern.startswith("/"):
                raise ConfigError(f"{where}: match must be a string starting with /")
            if "*" in pattern[:-1]:
                raise ConfigError(f"{where}: * may only end a pattern")
            if pattern in seen:
                raise ConfigError(f"{where}: duplicate pattern {pattern}")
            seen.add(pattern)
            cls = CLASSES.get(entry.get("class"))
            if cls is None:
                raise ConfigError(f"{where}: class must be one of {', '.join(CLASSES)}")
            scopes = entry.get("scopes", [])
            if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
                raise ConfigError(f"{where}: scopes must be a list of non-empty strings")
            if scopes and cls in NO_SCOPES:
                raise ConfigError(f"{where}: scopes are never checked for class {entry['class']}")
            classification = Classification(cls, list(scopes))
            if pattern.endswith("*"):
                self.prefixes.append((pattern[:-1], classification))
            else:
                self.exact[pattern] = classification
        self.prefixes.sort(key=lambda p: len(p[0]), reverse=True)
        self.fallback = Classification(AuthClass.BEARER, [wildcard_scope])

    def classify(self, path: str) -> Classification:
        found = self.exact.get(path)
        if found is not None:
            return found
        for prefix, classification in self.prefixes:
            if path.startswith(prefix):
                return classification
        return self.fallback


# Settings never change for the life of an instance: parse them once. (Not at
# import time: componentize-py runs module-level code while building.)
_table: Optional[Table] = None
_error: Optional[str] = None


def table() -> Table:
    global _table, _error
    if _table is None and _error is None:
        try:
            wildcard = host.get_config("wildcard-scope")
            if wildcard is None:
                wildcard = "wasmgate:all"
            if not wildcard:
                raise ConfigError("setting wildcard-scope: must not be empty")
            _table = Table(json_setting("methods", []), wildcard)
        except ConfigError as e:
            _error = str(e)
    if _error is not None:
        raise Err(PolicyError_InvalidConfig(_error))
    assert _table is not None
    return _table


class Classifier(exports.Classifier):
    def classify(self, call: CallInfo) -> Classification:
        return table().classify(call.path)
