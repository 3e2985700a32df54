"""One Milvus connection for a cluster index: a timeout on every call, one clear error when Milvus
cannot be reached, and a fresh connection on the next call once it is back."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from patentrank.errors import PatentrankError
from patentrank.index.stores import VectorStoreError, VectorStoreUnavailable

T = TypeVar("T")

for _name in ("pymilvus", "pymilvus.milvus_client"):  # failed calls log tracebacks; we raise one line
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_UNAVAILABLE_HINTS = ("fail connecting", "unavailable", "deadline", "retry timeout", "connection", "closed")
RETRY_AFTER_S = 5
RETRY_INTERVAL_S = 1.0  # after a failed connection, fail fast this long before trying again


class ClusterUnavailable(VectorStoreUnavailable):
    """Milvus cannot be reached: the server answers 503 with Retry-After, and retries on the next call."""


class ClusterError(VectorStoreError):
    """Milvus answered, but refused what was asked (a schema that does not match, a bad expression)."""


class MilvusConnection:
    """A `MilvusClient` opened on first use and dropped when a call finds Milvus unreachable.

    `setup(client)` runs on every fresh connection (create or check collections, load them), so a
    Milvus that restarted with its collections released is usable again without a restart of ours.

    Example (nothing listens on this port: one clear error, in about the timeout):
        >>> connection = MilvusConnection("http://127.0.0.1:9", timeout_s=1)
        >>> connection.call("count", lambda client: client.list_collections())
        Traceback (most recent call last):
        patentrank.index.cluster.connection.ClusterUnavailable: Milvus at http://127.0.0.1:9 is unreachable...
    """

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        setup: Callable[[Any], None] | None = None,
    ) -> None:
        self.uri = uri
        self.timeout_s = float(timeout_s)
        self._token = token or ""
        self._setup = setup
        self._client: Any = None
        self._lock = threading.RLock()
        self._closed = False
        self._last_failure: tuple[float, Exception] | None = None
        self._probe: tuple[float, str | None] | None = None

    @property
    def where(self) -> str:
        """The URI without credentials, for messages."""
        return re.sub(r"//[^/@]*@", "//***@", self.uri)

    def client(self, connect_timeout_s: float | None = None) -> Any:
        """The connected client (set up); ClusterUnavailable when Milvus cannot be reached.

        After a failed connection, calls fail at once with the same error for `RETRY_INTERVAL_S`, so a
        burst of requests against a Milvus that is down answers 503 in milliseconds, not one timeout each.
        """
        with self._lock:
            if self._client is not None:
                return self._client
            if self._closed:
                raise ClusterError(f"the connection to Milvus at {self.where} was closed")
            if self._last_failure is not None and time.monotonic() < self._last_failure[0] + RETRY_INTERVAL_S:
                raise ClusterUnavailable(str(self._last_failure[1]))
            client = None
            timeout = min(connect_timeout_s or self.timeout_s, self.timeout_s)
            try:
                # Dedicated: a fresh gRPC channel per reconnect, not a shared one stuck in back-off.
                client = MilvusClient(self.uri, token=self._token, timeout=timeout, dedicated=True)
                if self._setup is not None:
                    self._setup(client)
            except Exception as exc:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                error = self.translate(exc, "connect")
                if isinstance(error, ClusterUnavailable):
                    self._last_failure = (time.monotonic(), error)
                raise error from exc
            self._client, self._last_failure = client, None
            return client

    def probe(self, timeout_s: float = 2.0) -> str | None:
        """None when Milvus answers within `timeout_s`, else why not; cached for a second, so the health
        of several index parts costs one round trip. Never raises."""
        now = time.monotonic()
        cached = self._probe
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        why: str | None = None
        try:
            client = self.client(connect_timeout_s=timeout_s)
            client.list_collections(timeout=timeout_s)
        except Exception as exc:  # health reports, never raises
            error = self.translate(exc, "health check")
            if isinstance(error, ClusterUnavailable):
                self.drop()
            why = str(error)
        self._probe = (now, why)
        return why

    def translate(self, exc: Exception, op: str) -> PatentrankError:
        """Our error for a failed call: ClusterUnavailable (retry later) or ClusterError (say why).
        Our own errors pass as they are (`setup` refusing an embedder is not an unreachable Milvus)."""
        if isinstance(exc, PatentrankError):
            return exc
        code = getattr(exc, "code", None)
        message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
        first = message.splitlines()[0] if message else type(exc).__name__
        if (
            not isinstance(exc, MilvusException)
            or code == 2
            or any(h in message.lower() for h in _UNAVAILABLE_HINTS)
        ):
            return ClusterUnavailable(
                f"Milvus at {self.where} is unreachable ({op}): {first}. Check that it runs and that "
                "PATENTRANK_INDEX_DIR points at it; patentrank reconnects by itself when it is back"
            )
        return ClusterError(f"Milvus {op} failed: {first}")

    def call(self, op: str, fn: Callable[[Any], T]) -> T:
        """`fn(client)` with our errors; an unreachable Milvus drops the client so the next call reconnects.
        A collection that Milvus released (after its restart) is loaded again by `setup` and retried once."""
        client = self.client()
        try:
            return fn(client)
        except Exception as exc:
            message = str(getattr(exc, "message", None) or exc).lower()
            if isinstance(exc, MilvusException) and ("not loaded" in message or "released" in message):
                self.drop()
                try:
                    return fn(self.client())
                except Exception as again:
                    exc = again
            error = self.translate(exc, op)
            if isinstance(error, ClusterUnavailable):
                self.drop()
            raise error from exc

    def drop(self) -> None:
        """Forget the client: the next call connects (and sets up) again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the connection is already gone
                client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.drop()
