"""The cluster index's Milvus collections (patents, passages, meta), its token field, and filters as
Milvus expressions.

Tokens come from the project's analyzer, as in the embedded index. Milvus analyses a text field
itself, and its `standard` tokenizer (the one Milvus Lite shares with every server) would cut Chinese
words into characters; so each token is written in a form that tokenizer keeps whole: lower-case ASCII
words as they are, anything else as ``x`` + the hex of its UTF-8 bytes (``xh`` + a digest when long).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient

from patentrank.chunking import Passage
from patentrank.index.filters import PassageFields, SearchFilter, normalize_code

K1, B = 1.2, 0.75  # the embedded index's BM25 (index/lexical.py)
MAX_VARCHAR = 65_535  # bytes: Milvus's limit for one VARCHAR value
RECORD_PART_BYTES = 60_000  # a patent's JSON record is split into parts of at most this
MAX_TOKEN_BYTES = 255  # as the embedded index: longer "words" are dropped
DUMMY_DIM = 2  # Milvus wants a vector field in every collection; the patents collection has this one
SCHEMA_VERSION = 2  # 2: claims (part -1) and passage counts in patents; codes as one VARCHAR

_PLAIN = re.compile(r"[a-wyz0-9][a-z0-9]{0,39}")


def encode_token(token: str) -> str:
    """One analyzer token as one word of Milvus's `standard` tokenizer, distinct tokens kept distinct.

    Example:
        >>> [encode_token(t) for t in ("boiler", "2019", "锅炉", "xenon", "naïve")]
        ['boiler', '2019', 'xe99485e78289', 'x78656e6f6e', 'x6e61c3af7665']
    """
    if _PLAIN.fullmatch(token):
        return token
    hexed = token.encode().hex()
    if len(hexed) <= 62:
        return "x" + hexed
    return "xh" + hashlib.blake2b(token.encode(), digest_size=16).hexdigest()  # 'h' is not a hex digit


def token_text(tokens: Iterable[str]) -> str:
    """The passage's (or query's) tokens as the text Milvus's BM25 function analyses."""
    return " ".join(encode_token(t) for t in tokens if t and len(t.encode()) <= MAX_TOKEN_BYTES)


def row_id(patent_id: str, version: int, ordinal: int) -> int:
    """A passage row's primary key: 63 bits of blake2b(patent id | version | ordinal)."""
    digest = hashlib.blake2b(f"{patent_id}|{version}|{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def head_row(patent_id: str, version: int) -> dict[str, Any]:
    """A patent's head, keyed by its id in the heads collection: the version readers take (when that
    version's part 0 exists)."""
    return {"key": patent_id, "version": int(version), "dummy": [0.0] * DUMMY_DIM}


def collection_names(prefix: str) -> dict[str, str]:
    """{'patents', 'passages', 'heads', 'meta'} -> collection name under `prefix`.

    Example:
        >>> collection_names("acme")["passages"]
        'acme_passages'
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", prefix):
        raise ValueError(f"collection prefix {prefix!r} must be letters, digits and underscores")
    return {kind: f"{prefix}_{kind}" for kind in ("patents", "passages", "heads", "meta")}


def patents_schema() -> Any:
    """One row per part of one version of a patent. Part 0 is written last: it commits the version."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, max_length=600, is_primary=True)  # id|version|part
    schema.add_field("patent_id", DataType.VARCHAR, max_length=512)
    schema.add_field("version", DataType.INT64)
    schema.add_field("part", DataType.INT64)
    schema.add_field("parts", DataType.INT64)
    schema.add_field("passages", DataType.INT64)  # the version's passage rows: ordinals 0..passages-1
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("record", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("dummy", DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
    return schema


def passages_schema(dim: int | None) -> Any:
    """One row per passage of one version of a patent: text, BM25 tokens, vector and filter fields."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("patent_id", DataType.VARCHAR, max_length=512)
    schema.add_field("version", DataType.INT64)
    schema.add_field("ordinal", DataType.INT64)
    schema.add_field("field", DataType.VARCHAR, max_length=64)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field(
        "tokens", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
        analyzer_params={"tokenizer": "standard"}, enable_match=True,
    )  # fmt: skip
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    if dim:
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
    schema.add_field("language", DataType.VARCHAR, max_length=64)
    schema.add_field("jurisdiction", DataType.VARCHAR, max_length=64)
    schema.add_field("codes", DataType.VARCHAR, max_length=MAX_VARCHAR)  # |code|code|: `codes_text`
    for name in ("priority", "filing", "publication"):
        schema.add_field(name, DataType.INT64)
    schema.add_function(
        Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["tokens"],
                 output_field_names=["sparse"])
    )  # fmt: skip
    return schema


def heads_schema() -> Any:
    """One row per patent, keyed by its id: the version readers take. Apart from the patents collection
    so that the writers' version queries, which Milvus Lite answers by scanning, scan no head rows."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, max_length=512, is_primary=True)  # the patent id
    schema.add_field("version", DataType.INT64)
    schema.add_field("dummy", DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
    return schema


def meta_schema() -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, max_length=128, is_primary=True)
    schema.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("dummy", DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
    return schema


def index_params(client: Any, kind: str, dense: dict[str, Any] | None = None) -> Any:
    """Indexes: BM25 on the sparse field and the configured dense index; FLAT on the dummy vectors."""
    params = client.prepare_index_params()
    if kind == "passages":
        # pymilvus sends `params` flattened, which servers read; Milvus Lite reads only a "params" key
        # (JSON) and otherwise scores with k1 = 1.5. Servers merge that key too, so both get k1 and b.
        bm25 = {"bm25_k1": K1, "bm25_b": B}
        params.add_index(
            field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
            params={**bm25, "params": bm25},
        )  # fmt: skip
        if dense is not None:
            params.add_index(field_name="vector", **dense)
        for name in ("patent_id", "version"):
            params.add_index(field_name=name, index_type="INVERTED")
    else:
        params.add_index(field_name="dummy", index_type="FLAT", metric_type="L2")
        if kind == "patents":  # every read and write looks patents up by id
            params.add_index(field_name="patent_id", index_type="INVERTED")
    return params


def filter_expression(flt: SearchFilter | None) -> str:
    """`flt` over the passages collection, as `SearchFilter.to_milvus` but with LIKE's wildcards escaped
    in code prefixes, so that it selects exactly what `SearchFilter.matches` accepts.

    Code prefixes are a LIKE over one VARCHAR (``|code|code|``): on Milvus Lite, ARRAY_CONTAINS_ANY over
    an array of every prefix took 3-5 s per search at 150k passages, this LIKE about 0.1 s.

    Example:
        >>> filter_expression(SearchFilter(code_prefixes=["h01m 4"], languages=["zh"]))
        'language in ["zh"] and (codes like "%|H01M4%")'
    """
    if flt is None or flt.is_empty():
        return ""
    rest = replace(flt, code_prefixes=[]).to_milvus()
    clauses = [rest] if rest else []
    if flt.code_prefixes:
        prefixes = sorted({normalize_code(p) for p in flt.code_prefixes})
        clauses.append("(" + " or ".join(f'codes like "%|{_like(p)}%"' for p in prefixes) + ")")
    return " and ".join(clauses)


def _like(text: str) -> str:
    """`text` matched literally inside a LIKE pattern inside a string literal."""
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def codes_text(fields: PassageFields) -> str:
    """`PassageFields.codes_text` (``|code|code|``), whole codes only, within one VARCHAR value."""
    text = fields.codes_text
    while len(text.encode()) > MAX_VARCHAR:
        text = text[: text.rindex("|", 0, len(text) - 1) + 1]
    return text


def passage_row(fields: PassageFields, passage: Passage, tokens: Sequence[str]) -> dict[str, Any]:
    """One passage's row without its id and version (set when its version is chosen) or vector."""
    return {
        "patent_id": passage.patent_id, "ordinal": passage.ordinal, "field": passage.field,
        "text": fit(passage.text), "tokens": fit(token_text(tokens)), "language": fields.language,
        "jurisdiction": fields.jurisdiction, "codes": codes_text(fields), "priority": int(fields.priority),
        "filing": int(fields.filing), "publication": int(fields.publication),
    }  # fmt: skip


def fit(text: str) -> str:
    """Within one VARCHAR value (a passage is a few thousand bytes; this guards the limit)."""
    data = text.encode()
    if len(data) <= MAX_VARCHAR:
        return text
    return data[:MAX_VARCHAR].decode(errors="ignore")


def split_record(record: str, part_bytes: int = RECORD_PART_BYTES) -> list[str]:
    """`record` in pieces of at most `part_bytes` UTF-8 bytes, never inside a character.

    Example:
        >>> split_record("ab锅炉", part_bytes=4)
        ['ab', '锅', '炉']
    """
    data = record.encode()
    parts, start = [], 0
    while start < len(data) or not parts:
        end = min(start + part_bytes, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte: step back
            end -= 1
        parts.append(data[start:end].decode())
        start = end
    return parts
