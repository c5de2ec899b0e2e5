"""``Choice``: the base of axcnn's string enums (modes, stages, backends, gradient rules).

``Choice.parse`` accepts a member or its value in any case, with ``-`` for ``_``, and raises a
one-line ``ConfigError`` that lists the valid values.
"""

from __future__ import annotations

import enum
import re

from .errors import ConfigError


class Choice(enum.Enum):
    @classmethod
    def what(cls) -> str:
        """How error messages name this choice (default: the class name in words)."""
        return re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()

    @classmethod
    def parse(cls, value):
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower().replace("-", "_"))
        except ValueError:
            raise ConfigError(f"unknown {cls.what()} '{value}'; expected one of "
                              f"{', '.join(m.value for m in cls)}") from None
