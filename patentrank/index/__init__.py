"""Stores: the SQLite document store, the lexical index and the vector stores (FAISS, Milvus)."""
