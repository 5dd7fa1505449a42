"""Per-provider request and token rate limits, applied before a call leaves, so a spike queues in the
gateway instead of turning into 429s from the provider.

aiolimiter's leaky bucket holds ``burst_s`` seconds' worth of the rate: the first calls of a spike go
out at once, the rest wait their turn. A token estimate (prompt bytes / 4 + the route's max output)
is what providers themselves count against TPM before they know the real usage.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter

from gateway.errors import DeadlineExceeded
from gateway.policy import ProviderConfig


class ProviderLimits:
    def __init__(self, config: ProviderConfig) -> None:
        self._requests = self._bucket(config.rpm, config.burst_s)
        self._tokens = self._bucket(config.tpm, config.burst_s)

    @staticmethod
    def _bucket(per_minute: int | None, burst_s: float) -> AsyncLimiter | None:
        if per_minute is None:
            return None
        depth = max(1.0, per_minute / 60 * burst_s)
        return AsyncLimiter(depth, depth * 60 / per_minute)

    @property
    def limited(self) -> bool:
        return self._requests is not None or self._tokens is not None

    async def acquire(self, estimated_tokens: int, timeout_s: float) -> None:
        """Wait for capacity, at most ``timeout_s`` (what is left of the call's deadline)."""
        if not self.limited:
            return
        try:
            async with asyncio.timeout(timeout_s):
                if self._requests is not None:
                    await self._requests.acquire()
                if self._tokens is not None:
                    await self._tokens.acquire(min(float(estimated_tokens), self._tokens.max_rate))
        except TimeoutError:
            raise DeadlineExceeded(f"rate limit queue longer than the {timeout_s:.3g}s left") from None


def estimate_tokens(prompt_bytes: int, max_output_tokens: int) -> int:
    return prompt_bytes // 4 + max_output_tokens
