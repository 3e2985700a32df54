"""Cluster mode: the whole index in Milvus (`ClusterIndex`), for stateless server replicas."""

from __future__ import annotations

import re

CLUSTER_URI = re.compile(r"^(https?|tcp|grpc)://", re.IGNORECASE)


def is_cluster_uri(location: object) -> bool:
    """Whether an index location names a Milvus server rather than a folder.

    Example:
        >>> is_cluster_uri("http://milvus:19530"), is_cluster_uri("/data/index")
        (True, False)
    """
    return isinstance(location, str) and bool(CLUSTER_URI.match(location.strip()))
