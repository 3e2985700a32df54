"""Score cache for reranker results: an in-process LRU, or Redis shared between servers."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("patentrank.cache")

# One cached pair: the raw logit difference, the prompt's token count, whether its body was cut.
_VALUE = struct.Struct("<dI?")
KEY_PREFIX = "patentrank:score:v1:"


@dataclass(frozen=True, slots=True)
class CachedScore:
    """What a cache hit gives back: enough to answer without tokenising or running the model."""

    logit: float
    tokens: int
    truncated: bool

    def pack(self) -> bytes:
        return _VALUE.pack(self.logit, self.tokens, self.truncated)

    @classmethod
    def unpack(cls, data: bytes) -> CachedScore:
        logit, tokens, truncated = _VALUE.unpack(data)
        return cls(logit, tokens, truncated)


def score_key(
    model: str,
    instruction: str,
    query: str,
    document: str,
    max_length: int,
    max_tokens_per_doc: int | None,
) -> str:
    """A stable key for one (model, instruction, query, document, truncation) combination.

    The parts are length-prefixed before hashing, so no choice of texts can make two different
    combinations collide by shifting characters between fields.

    Example:
        >>> score_key("m", "i", "q", "d", 8192, None) == score_key("m", "i", "q", "d", 8192, None)
        True
    """
    digest = hashlib.blake2b(digest_size=20)
    for part in (model, instruction, query, document, str(max_length), str(max_tokens_per_doc)):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return KEY_PREFIX + digest.hexdigest()


class ScoreCache(Protocol):
    """What the engine needs from a cache; every method swallows backend failures."""

    backend: str

    async def get_many(self, keys: Sequence[str]) -> list[CachedScore | None]: ...

    async def set_many(self, items: dict[str, CachedScore]) -> None: ...

    def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class NoCache:
    """The cache that never hits (cache_size 0 and no cache_url)."""

    backend = "none"

    async def get_many(self, keys: Sequence[str]) -> list[CachedScore | None]:
        return [None] * len(keys)

    async def set_many(self, items: dict[str, CachedScore]) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": True}

    async def close(self) -> None:
        return None


class LRUScoreCache:
    """A bounded in-process cache; used from the event loop thread only, so it needs no lock.

    Example:
        >>> cache = LRUScoreCache(max_entries=2)
    """

    backend = "lru"

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> list[CachedScore | None]:
        found: list[CachedScore | None] = []
        for key in keys:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
            found.append(CachedScore.unpack(data) if data is not None else None)
        return found

    async def set_many(self, items: dict[str, CachedScore]) -> None:
        for key, value in items.items():
            self._entries[key] = value.pack()
            self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": True, "entries": len(self._entries), "size": self.max_entries}

    async def close(self) -> None:
        self._entries.clear()


class RedisScoreCache:
    """A cache in Redis, shared by every server that points at it.

    An outage never fails a request: the first error is logged once, the cache then acts as empty
    for `retry_after_s` seconds (so requests do not each wait for a connection timeout), and the
    next successful call logs the recovery.

    Example:
        >>> cache = RedisScoreCache("redis://127.0.0.1:6379/0")
    """

    backend = "redis"

    def __init__(self, url: str, *, timeout_s: float = 0.5, retry_after_s: float = 5.0) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.retry_after_s = retry_after_s
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._down_until = 0.0
        self.last_error: str | None = None

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.last_error is None:
            logger.warning("score cache at %s unavailable (%s); serving without cache", self.url, exc)
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self.retry_after_s

    def _succeeded(self) -> None:
        if self.last_error is not None:
            logger.warning("score cache at %s is back", self.url)
            self.last_error = None

    async def get_many(self, keys: Sequence[str]) -> list[CachedScore | None]:
        if not keys or not self._available():
            return [None] * len(keys)
        try:
            values = await self._client.mget(list(keys))
        except Exception as exc:  # any outage (refused, timeout, protocol) means "no cache"
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        found: list[CachedScore | None] = []
        for value in values:
            try:
                found.append(CachedScore.unpack(value) if value is not None else None)
            except struct.error:  # a foreign value under our prefix: treat as a miss
                found.append(None)
        return found

    async def set_many(self, items: dict[str, CachedScore]) -> None:
        if not items or not self._available():
            return
        try:
            await self._client.mset({key: value.pack() for key, value in items.items()})
        except Exception as exc:
            self._failed(exc)
            return
        self._succeeded()

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": self.last_error is None, "error": self.last_error}

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection must not fail shutdown
            await self._client.aclose()


def make_cache(size: int, url: str | None) -> ScoreCache:
    """Redis when a URL is given, else an LRU of `size` entries, else (size 0) no cache."""
    if url:
        return RedisScoreCache(url)
    if size > 0:
        return LRUScoreCache(size)
    return NoCache()
