"""How one setting is read from the environment: its variable's full name, its value checked
against what it accepts, and the `ConfigError` that names all three when it is not accepted.

Who uses it: `settings.load` (every program of the binary, first thing, as whatever user it was
started as), one variable at a time; `secretfiles` raises its `ConfigError` for a file it cannot
take. Nothing here reads a variable that `settings` does not ask for.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
Choice = TypeVar("Choice", bound=enum.StrEnum)
# What an address to listen on may be, as the refusal of any other says it.
LISTEN_ACCEPTED = (
    "PORT, :PORT, HOST:PORT or [IPV6]:PORT, HOST an IP address (0.0.0.0: every IPv4 address, [::]: "
    "every address, 127.0.0.1: the container only), PORT from 1 to 65535; empty: none"
)


class ConfigError(ValueError):
    def __init__(self, setting: str, value: str, accepted: str, *, secret: bool = False) -> None:
        self.setting = setting
        self.value = "<redacted>" if secret else value
        self.accepted = accepted
        super().__init__(f"{setting}={self.value!r} is invalid; accepted: {accepted}")


class Reader:
    """Reads one setting at a time, raising ConfigError with the full variable name."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self.environ = environ
        self.prefix = prefix
        self.keys: set[str] = set()

    def raw(self, name: str, default: str, *, prefixed: bool = True) -> tuple[str, str]:
        key = self.prefix + name if prefixed else name
        self.keys.add(key)
        return key, self.environ.get(key, default)

    def choice(self, name: str, choices: type[Choice], default: Choice) -> Choice:
        key, value = self.raw(name, default)
        for choice in choices:
            if value.lower() == choice:
                return choice
        raise ConfigError(key, value, "one of " + ", ".join(choices))

    def word(self, name: str, words: tuple[str, ...], default: str) -> str:
        key, value = self.raw(name, default)
        if value.lower() in words:
            return value.lower()
        raise ConfigError(key, value, "one of " + ", ".join(words))

    def path(self, name: str, default: str) -> str:
        key, value = self.raw(name, default)
        return absolute(key, value, value)

    def optional_path(self, name: str) -> str:
        """An absolute path, or empty when unset."""
        key, value = self.raw(name, "")
        return absolute(key, value, value) if value else ""

    def paths(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        key, value = self.raw(name, ":".join(default))
        return tuple(absolute(key, value, item) for item in value.split(":") if item)

    def number(
        self, name: str, default: T, convert: Callable[[str], T], accepted: str, valid: Callable[[T], bool]
    ) -> T:
        key, value = self.raw(name, str(default))
        try:
            parsed = convert(value)
        except ValueError:
            parsed = None
        if parsed is None or not valid(parsed):
            raise ConfigError(key, value, accepted)
        return parsed

    def seconds(self, name: str, default: float) -> float:
        return self.number(name, default, float, "a number of seconds greater than 0", lambda v: 0 < v < 1e9)

    def flag(self, name: str) -> bool:
        """Off by default; `1`, `true`, `yes` turn it on, `0`, `false`, `no` keep it off."""
        return self.word(name, ("0", "1", "false", "true", "no", "yes"), "0") in ("1", "true", "yes")

    def count(self, name: str, default: int) -> int:
        return self.number(name, default, int, "a whole number of at least 1", lambda v: v >= 1)

    def listen_address(self, name: str) -> tuple[str, int] | None:
        """An address to listen on, `(host, port)` (host "" for every IPv4 address); None when
        unset or empty. Only IP addresses: a name would be resolved when the listener starts, long
        after this line could refuse it."""
        key, value = self.raw(name, "")
        if not value:
            return None
        host, _, port = value.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        valid_host = (
            _ip_address(host, ipv6=True) if bracketed else host == "" or _ip_address(host, ipv6=False)
        )
        if not (valid_host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(key, value, LISTEN_ACCEPTED)
        return host, int(port)


def _ip_address(host: str, *, ipv6: bool) -> bool:
    import socket  # only when an address is set: every program reads its settings first

    try:
        socket.inet_pton(socket.AF_INET6 if ipv6 else socket.AF_INET, host)
    except (OSError, ValueError):  # ValueError: a NUL in it
        return False
    return True


def absolute(key: str, value: str, path: str) -> str:
    if not os.path.isabs(path):
        raise ConfigError(key, value, "an absolute path (starting with /)")
    return os.path.normpath(path)
