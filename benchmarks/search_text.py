"""The prose of the search benchmark's report (filled in by `search_report.render`)."""

REPORT = """\
Measured {when} UTC with `flock /tmp/patentrank-bench.lock {command}` ({minutes:.0f} min).
Machine: {machine}. **CPU ISA: {isa}.**

Synthetic patent corpus (55% Chinese, 45% English, chunked by `PatentIndex` itself) and {dim}-d clustered
synthetic vectors; **embedding is excluded** (a lookup stands in for the model when indexing and for
`embed_query` when searching), so is the reranker (`rerank=False`). How the corpus, vectors and queries are
made: `benchmarks/synthetic_patents.py` (and `benchmarks/README.md`). {memo}

A latency marked "!" was measured while other processes used more than {busy} of a core on average (the
machine is shared): treat it as unreliable. Every size runs in its own process, one after the other.

### Targets (issue 9)

{targets}

### Indexing: one real `PatentIndex.add` per size, stage by stage

Product defaults (the lexical engine and the vector store as `PatentIndex` opens them, a checkpoint every
5,000 patents, batches of 64 patents as the CLI uses with an embedder). Each stage is the self time of
wrappers put around the index's own parts during that one run (the analyzer's time is taken out of the
lexical engine's), so the stages add up to the wall time; rates are passages/s.

{indexing}

### One commit of 1,000 patents into the built index

1,000 new patents (generated beforehand) given to `PatentIndex.add(batch_size=64)` on the index just built:
one checkpoint, so one commit of every stage, timed end to end. Analysis runs uncached here at every size.

{commit}

### Before / after: the numpy BM25 of commit 19128a7 against the lexical engine now

Measured in the same run on the same passages: `benchmarks/legacy_lexical.py` (today's copy of the old
`patentrank/index/lexical.py`) gets every passage of the document store, committed every 5,000 patents' worth
of passages as the old `PatentIndex` did, then the same 1,000-patent commit (given the tokens the analyzer
produced, so analysis is not counted on either side). Its lexical stage is what the old pipeline ran per
query: `DocStore.allowed_passage_ids(filter)` in SQL when filtered, then `LexicalIndex.search(text, 200,
allowed)`; *now* is the lexical stage's time as `SearchPipeline.search` reports it (`stages["lexical"]["ms"]`,
the filter inside the engine's query).

{before_after}

### Filters

Measured selectivity: the share of all passages that each query's filter lets through (evaluated with
`SearchFilter.matches`'s rules over the fields of every stored passage).

{selectivity}

### Query latency: `SearchPipeline.search`, ms p50 / p95

{queries} queries per pass (a pass stops after {budget:.0f} s once 20 are done: "(n q)"), alternating Chinese
and English, `SearchRequest(rerank=False, highlight=False)` except where named, top_n 10, retrieve_k 200;
**no model time**.

{pipeline}

The retrieval stages' own time inside those calls (`stages[...]["ms"]` of the response: lexical, dense, or
both for hybrid), ms p50 / p95:

{stages}

The engines alone, k = 200 (the lexical engine's `search(text, 200, filter)` includes analysing the query;
the vector store's `search(vector, 200, filter)`):

{stores}

### Recall@100: the index's vector store against exact search

The vector store as `PatentIndex` built it (its kind and settings by size), `search(k=100)`, against exact
inner-product search over every vector it was given (the benchmark logs them to disk while indexing and
scans them in blocks), with the same filters. The mean cosine of a query to its exact neighbours at ranks
1 / 100 / 1000 says how hard these vectors are (computed on at most 2M of them).
"n missed, m tied at the cut": of the exact neighbours, n were not returned, m of them scoring within
1e-5 of the 100th exact score (a tie that two BLAS kernels may round either way, which is why even the
flat, exact store can show 0.9999).

{recall}

### Memory and disk

Peak RSS is sampled every 50 ms in each phase of the size's own process. *legacy build* and *exact search*
are the benchmark's baseline and ground truth, not the product's; the targets table uses the largest of the
other phases.

{memory}
"""
