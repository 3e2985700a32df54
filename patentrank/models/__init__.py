"""Model backends: the Qwen3 reranker and the embedder, in-process or remote."""
