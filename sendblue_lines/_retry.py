"""Backoff with full jitter; which failures deserve it: `SendblueError.transient`."""

from __future__ import annotations

import random

import attrs

from ._config import check_count, check_seconds
from .errors import ConfigurationError

#: The design promises at most this many attempts for a safe call; a
#: confirm sends one token at most as often.
MAX_ATTEMPTS = 5


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently a call is tried again.

    `attempts` counts every try, the first included (1 to 5). Before try
    n+1 we sleep a random time between 0 and `min(max_delay, base_delay *
    2**(n-1))` seconds ("full jitter"), so that many clients failing together
    do not retry together.

    Raises:
        ConfigurationError: from the constructor, for attempts that are not
            an int from 1 to 5, or delays that are not finite numbers of
            seconds from 0 to a day with `base_delay <= max_delay`.
    """

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 5.0

    def __attrs_post_init__(self) -> None:
        check_count(self.attempts, "retry attempts", low=1, high=MAX_ATTEMPTS)
        check_seconds(self.base_delay, "retry base_delay", allow_zero=True)
        check_seconds(self.max_delay, "retry max_delay", allow_zero=True)
        if not self.base_delay <= self.max_delay:
            raise ConfigurationError(
                "retry delays must satisfy 0 <= base_delay <= max_delay"
            )

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after `failed_attempts` tries have failed."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
