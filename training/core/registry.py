"""Named things of one kind (losses, networks, checks, data sources), found by the name a config gives.

Every registry in the project is a `Registry` filled with its `register` decorator where the thing is
defined, so grepping a name finds its definition; an unknown name is a one-line config error that
lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from training.core.errors import ConfigError

T = TypeVar("T")


class Registry(dict):
    """A dict of name -> thing whose missing names raise ConfigError naming `key` (e.g. 'loss.name')."""

    def __init__(self, kind: str, key: str):
        super().__init__()
        self.kind, self.key = kind, key

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@LOSSES.register("hinge")` above a function or class adds it under `name`."""
        def add(thing: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} '{name}' is registered twice")   # a bug, not user input
            self[name] = thing
            return thing
        return add

    def __missing__(self, name: str):
        raise ConfigError(f"'{self.key}': unknown {self.kind} '{name}' (known: {', '.join(sorted(self))})")
