"""How one setting's text becomes a value: a word from a fixed set, a path, a number, a flag; every
refusal a `ConfigError` naming the full variable, the value and what is accepted.

Who uses it: `settings.load` (every program of the binary, as whatever user it was started as) and
`secretfiles` (the boot, as root); the caller turns a ConfigError into exit 78 and one JSON line.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
Choice = TypeVar("Choice", bound=enum.StrEnum)


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


def absolute(key: str, value: str, path: str) -> str:
    if not os.path.isabs(path):
        raise ConfigError(key, value, "an absolute path (starting with /)")
    return os.path.normpath(path)
