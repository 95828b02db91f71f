"""The summary: one markdown table built from the suites' JSON files.

The table is rebuilt from whatever ``<suite>.json`` files the output directory holds, so
suites run at different times into the same directory still give one table. The same
table can replace the block between two markers in ``docs/benchmarks.md``; the prose
around it (what bounds each number) is written by hand and stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUITE_ORDER = (
    "ingest",
    "project",
    "replay",
    "open",
    "search",
    "reads",
    "kafka",
    "erasure",
    "access",
    "sensitive",
    "pubsub",
    "peers",
)
START = "<!-- bench:summary:start -->"
END = "<!-- bench:summary:end -->"


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def load(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in SUITE_ORDER:
        p = out / f"{name}.json"
        if p.exists():
            found[name] = json.loads(p.read_text())
    return found


def _ingest_rows(d: dict[str, Any]) -> list[str]:
    p, rows = d["parameters"], []
    for durability, r in d["results"].items():
        sdk, raw = r["sdk_events_per_s"]["median"], r["raw_log_events_per_s"]["median"]
        lag = r["flush_after_last_append_s"]["median"]
        cpu = r.get("cpu_us_per_event") or {}
        split = (
            f"; CPU per event {cpu['process']:.0f} µs: append thread "
            f"{cpu['append_thread']:.0f}, projector {cpu['projector_thread']:.0f}, "
            f"other threads {cpu['other_threads']:.0f}"
            if cpu.get("append_thread") is not None
            else ""
        )
        rows.append(
            f"| ingest, durability `{durability}` | SDK `append`, {_n(p['events'])} events in "
            f"batches of {p['batch_size']}: **{_n(sdk)} ev/s** (projector done "
            f"{lag:.2f} s after the last append{split}) | raw `EmbeddedLog.append` of the same "
            f"bytes: {_n(raw)} ev/s | {r['ratio']:.2f} | ≥ 25,000 ev/s (aim 50,000), "
            f"ratio ≥ 0.3 | {_ok(r['meets_required'])} / {_ok(r['meets_ratio_goal'])} |"
        )
    return rows


def _project_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    eps, raw = r["catch_up_events_per_s"]["median"], r["raw_duckdb_events_per_s"]["median"]
    close, ckpt = r["close_after_catch_up_s"]["median"], r["raw_final_checkpoint_s"]["median"]
    return [
        f"| project | catch-up (read, open, decide, project into DuckDB) of "
        f"{_n(p['events'])} events, batches of {_n(p['batch_size'])}: **{_n(eps)} ev/s** "
        f"(close afterwards {close:.1f} s) | raw Arrow → DuckDB insert of the same rows: "
        f"{_n(raw)} ev/s (final checkpoint {ckpt:.1f} s) | {r['ratio']:.2f} | "
        f"≥ 20,000 ev/s | {_ok(r['meets_required'])} |"
    ]


def _replay_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    s = r["replay_seconds"]["median"]
    return [
        f"| replay | `MemoryStore.replay` of {_n(p['events'])} events: **{s:.1f} s** "
        f"({_n(r['replay_events_per_s']['median'])} ev/s; projection "
        f"{r['project_seconds']['median']:.1f} s, with the log's copy "
        f"({r['copy_seconds']['median']:.1f} s) on a thread meanwhile;"
        f" close afterwards {r['close_seconds']['median']:.1f} s)"
        f" | — | — | < 60 s per 1,000,000 events ({r['seconds_per_million_events']:.0f} s) "
        f"| {_ok(r['meets_goal'])} |"
    ]


def _open_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    reopen, check = r["reopen_seconds"]["median"], r["open_verify_seconds"]["median"]
    full, idle = r["full_verify_seconds"]["median"], r["reopen_nothing_new_seconds"]["median"]
    return [
        f"| open, integrity | a store of {_n(p['log_records'])} records reopened with "
        f"{_n(p['new_records'])} appended since its last open: verifying them "
        f"**{check * 1000:.0f} ms** ({r['open_verify_us_per_record']:.0f} µs/record, fixed "
        f"costs included); the whole reopen {reopen:.1f} s, {idle:.1f} s with nothing new "
        f"| `verify()` of the whole log (what `audit verify` does): {full:.2f} s "
        f"({r['full_verify_us_per_record']:.1f} µs/record) | "
        f"{r['open_verify_over_full_verify']:.3f} | verifies the "
        f"{_n(d['goals']['verified_records_at_reopen'])} new records only | yes |"
    ]


def _search_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    rec, lat, emb, meets = r["recall"], r["latency_ms"], r["embedding"], r["meets"]
    build, proj = r["index_build"], r["projection"]
    n = _n(p["memories"])
    ms = "{:.2f} ms".format
    return [
        f"| search, recall@10 | `MemoryStore.search(vector=)` over {n} MiniLM-embedded "
        f"memories, {p['questions']} questions: **{rec['recall_at_10']:.3f}**; with a filter "
        f"held by {p['selective_memories']:,} memories (1%, exact over the candidates): "
        f"**{rec['filtered_recall_at_10']:.3f}** | exact numpy brute force over the same "
        f"vectors | — | ≥ {d['goals']['recall_at_10']} | {_ok(meets['recall_at_10'])} / "
        f"{_ok(meets['filtered_recall_at_10'])} |",
        f"| search, latency | p50 / p95 with query text (embedding included): "
        f"{ms(lat['text']['p50_ms']['median'])} / {ms(lat['text']['p95_ms']['median'])}; with a "
        f"query vector: {ms(lat['vector']['p50_ms']['median'])} / "
        f"**{ms(lat['vector']['p95_ms']['median'])}**; filtered: "
        f"{ms(lat['filtered']['p50_ms']['median'])} / {ms(lat['filtered']['p95_ms']['median'])}"
        f" | raw hnswlib `knn_query` (k {p['search_depth']}, same index): "
        f"{ms(lat['raw_knn']['p50_ms']['median'])} / {ms(lat['raw_knn']['p95_ms']['median'])}"
        f" | overhead at p95 **{ms(r['overhead_p95_ms']['median'])}** | overhead ≤ "
        f"{d['goals']['overhead_p95_ms']:g} ms | {_ok(meets['overhead_p95_ms'])} |",
        f"| search, embedding | `TransformersEmbedder` (batches of {emb['batch_size']}), "
        f"{_n(emb['texts'])} texts: **{emb['memstream_texts_per_s']['median']:,.0f} texts/s** "
        f"| raw transformers (AutoModel + mean pooling), same batches and texts: "
        f"{emb['raw_texts_per_s']['median']:,.0f} texts/s | {emb['ratio']:.2f} | ratio ≥ "
        f"{d['goals']['embedding_ratio']} | {_ok(meets['embedding_ratio'])} |",
        *_query_embedding_rows(d),
        f"| search, index build | semantic projection rebuild of {n} memories from cached "
        f"vectors (0 model calls): **{_n(proj['events_per_s']['median'])} ev/s**; into "
        f"hnswlib {_n(build['store_vectors_per_s']['median'])} vectors/s | raw hnswlib "
        f"`add_items`, same parameters and chunks: "
        f"{_n(build['raw_hnswlib_vectors_per_s']['median'])} vectors/s | "
        f"{build['ratio']:.2f} | — | — |",
    ]


def _query_embedding_rows(d: dict[str, Any]) -> list[str]:
    qe = d["results"].get("query_embedding")
    if qe is None:  # a JSON written before the query path was measured
        return []
    goals, meets = d["goals"], d["results"]["meets"]
    rec = qe["recall_at_10"]
    ms = "{:.2f} ms".format
    return [
        f"| search, query embedding | `embed_query` ({qe['query_path']}, "
        f"{qe['query_threads']} thread), {qe['questions']} questions of "
        f"{qe['mean_words']:.0f} words one at a time: p50 / p95 "
        f"**{ms(qe['query_ms']['p50']['median'])}** / {ms(qe['query_ms']['p95']['median'])}; "
        f"what the store adds to a text search: {ms(qe['store_adds_p50_ms']['median'])} at p50; "
        f"recall@10 of the labelled questions (store / exact): {rec['query']['store']:.3f} / "
        f"{rec['query']['exact']:.3f}, lowest cosine to the previous path "
        f"{qe['lowest_cosine']:.5f}, largest difference per component "
        f"{qe['max_abs_difference']:.1e} | the previous path, `embed([text])` "
        f"({qe['previous_threads']} threads), same questions, interleaved: "
        f"{ms(qe['previous_ms']['p50']['median'])} / {ms(qe['previous_ms']['p95']['median'])}; "
        f"recall@10 {rec['previous']['store']:.3f} / {rec['previous']['exact']:.3f} | "
        f"{qe['ratio_p50']['median']:.2f} (p95 {qe['ratio_p95']['median']:.2f}) | ratio ≤ "
        f"{goals['query_embedding_ratio']:g}, recall within {goals['query_recall_delta']:g} | "
        f"{_ok(meets['query_embedding_ratio'])} / {_ok(meets['query_recall_delta'])} |"
    ]


def _reads_rows(d: dict[str, Any]) -> list[str]:
    p, r, g = d["parameters"], d["results"], d["goals"]
    rd, sr, meets = r["reads"], r["search"], r["meets"]

    def ms(key: str, src: dict[str, Any] = rd) -> str:
        return f"{src[key]['median']:.3f} ms"

    mem = rd["view_memory"]
    rows = [
        f"| reads, get | `MemoryStore.get` of a current memory ({_n(p['memories'])} memories, "
        f"from the view), p50 / p95: **{ms('get_view_p50_ms')}** / {ms('get_view_p95_ms')} "
        f"(the view: {mem['bytes_per_memory']:,.0f} bytes per memory, loaded in "
        f"{mem['load_seconds']:.1f} s) | the same SDK call on the DuckDB path: "
        f"{ms('get_duckdb_p50_ms')} / {ms('get_duckdb_p95_ms')} | "
        f"{rd['get_duckdb_p50_ms']['median'] / rd['get_view_p50_ms']['median']:,.0f}× | "
        f"p50 ≤ {g['get_p50_ms']} ms | {_ok(meets['get_p50_ms'])} |",
        f"| reads, history | `MemoryStore.history`, p50 / p95: "
        f"**{ms('history_view_p50_ms')}** / {ms('history_view_p95_ms')} | DuckDB path: "
        f"{ms('history_duckdb_p50_ms')} / {ms('history_duckdb_p95_ms')} | "
        f"{rd['history_duckdb_p50_ms']['median'] / rd['history_view_p50_ms']['median']:,.0f}× | "
        f"p50 ≤ {g['history_p50_ms']} ms | {_ok(meets['history_p50_ms'])} |",
        f"| reads, HTTP get | `GET /v1/memories/{{id}}` round trip p50 (uvicorn, httpx, local "
        f"socket): **{ms('http_view_p50_ms')}**, the server's own time "
        f"{ms('http_view_server_p50_ms')} | DuckDB path: {ms('http_duckdb_p50_ms')} (server "
        f"{ms('http_duckdb_server_p50_ms')}) | gap **{ms('http_view_gap_p50_ms')}** | "
        f"gap ≤ {g['http_gap_p50_ms']} ms | {_ok(meets['http_gap_p50_ms'])} |",
    ]
    names = {"namespace_1": "1 namespace", "namespaces_3": "3 namespaces", "tag_10pct": "a tag"}
    emb = sr["embed_p50_ms"]["median"]
    for key, label in names.items():
        f = sr["filters"][key]
        rows.append(
            f"| reads, filtered search, {label} | {_n(f['members'])} of "
            f"{_n(sr['memories'])} memories: with a query vector (what the store adds) "
            f"p50 **{f['view_p50_ms']['median']:.2f} ms** (p95 {f['view_p95_ms']['median']:.2f});"
            f" with the text {f['text_p50_ms']['median']:.1f} ms, the embedding alone "
            f"{emb:.1f} ms; recall@10 vs exact **{f['recall_at_10']:.3f}** | candidates by the "
            f"DuckDB query: {f['duckdb_p50_ms']['median']:.2f} ms "
            f"(p95 {f['duckdb_p95_ms']['median']:.2f}) | "
            f"{f['duckdb_p50_ms']['median'] / f['view_p50_ms']['median']:.1f}× | added ≤ "
            f"{g['filter_added_p50_ms']:g} ms, recall ≥ {g['filter_recall_at_10']} | "
            f"{_ok(meets['filter_added_p50_ms:' + key])} / "
            f"{_ok(meets['filter_recall_at_10:' + key])} |"
        )
    return rows


def _kafka_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    one, two = r["one_worker_events_per_s"]["median"], r["two_workers_events_per_s"]["median"]
    noop = r["faust_noop_events_per_s"]["median"]
    raw = r["raw_aiokafka_projectors_events_per_s"]["median"]
    return [
        f"| kafka, end to end | {_n(p['events'])} events published (SDK) → sequenced, sealed, decided, "
        f"projected, outcomes back ({p['partitions']} partitions), 1 worker: **{_n(one)} ev/s**"
        f"; 2 workers: {_n(two)} ev/s (×{r['two_over_one_worker']:.2f}) | a Faust agent "
        f"doing nothing on the same records: {_n(noop)} ev/s; raw aiokafka consumer + the same "
        f"projectors: {_n(raw)} ev/s | {r['ratio_to_faust_noop']:.2f} | ≥ "
        f"{d['goals']['ratio_to_faust_noop']} of the no-op agent | "
        f"{_ok(r['meets_ratio_goal'])} |",
        f"| kafka, a record per event | the same events, each in a request record of its own "
        f"(as a producer outside the SDK sends them), 1 worker: "
        f"**{_n(r['one_worker_record_per_event_events_per_s']['median'])} ev/s** | the "
        f"no-op agent above: {_n(noop)} ev/s | "
        f"{r['ratio_record_per_event_to_faust_noop']:.2f} | — | — |",
        f"| kafka, failover | SIGKILL one of 2 workers → the survivor serves every partition: "
        f"**{r['failover_s']['median']:.1f} s** | consumer session timeout "
        f"{p['session_timeout_s']:g} s | — | — | — |",
    ]


def _erasure_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    plain, erasing = r["plain_events_per_s"]["median"], r["erasing_events_per_s"]["median"]
    ms = "{:.3f} ms".format
    return [
        f"| erasure, ingest | {_n(p['memories'])} creates in batches of {p['batch_size']} "
        f"with an erase every {_n(p['erase_every'])} ({p['erasures']} erasures, every file "
        f"rewritten after them, checkpoint included): **{_n(erasing)} ev/s** | the same "
        f"creates, no erase: {_n(plain)} ev/s | {r['ingest_ratio']:.2f} | erased texts left "
        f"in any file: 0 ({r['erased_texts_on_disk']}) | {_ok(r['erased_texts_on_disk'] == 0)} |",
        f"| erasure, rewrite | the core projection's file ({r['file_mb']:.0f} MB) rewritten "
        f"after one erase: copy **{r['rewrite_copy_s']['median']:.2f} s** (writers wait), "
        f"swap {r['rewrite_swap_s']['median'] * 1e3:.0f} ms (readers wait) | — | — | — | — |",
        f"| erasure, reads | `get`'s query through `DuckStore.query` (the read gate) p50: "
        f"**{ms(r['gated_read_p50_ms']['median'])}** | the same query on a raw cursor: "
        f"{ms(r['raw_get_p50_ms']['median'])} | "
        f"{r['gated_read_p50_ms']['median'] / r['raw_get_p50_ms']['median']:.2f} | — | — |",
        f"| erasure, keyword purge | keyword index of {_n(p['memories'])} documents rewritten "
        f"from its live documents: **{r['keyword_purge_s']['median']:.2f} s** | indexing "
        f"the same documents into a fresh index: {r['keyword_build_s']['median']:.2f} s | "
        f"{r['keyword_purge_s']['median'] / r['keyword_build_s']['median']:.2f} | — | — |",
    ]


def _peers_rows(d: dict[str, Any]) -> list[str]:
    p, ours, theirs, floor = d["parameters"], d["memstream"], d["peer"], d["floor"]
    peer = "Mem0" if p["peer"] == "mem0" else p["peer"]

    def ms(r: dict[str, Any]) -> str:
        return f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f} ms"

    rows = [
        f"| peers, writes one at a time | {_n(p['single'])} creates, each acknowledged "
        f"(durable): **{_n(ours['single']['acks_per_s'])}/s**; all searchable "
        f"{ours['single']['searchable_seconds']:.1f} s after the first | {peer} `add` "
        f"(infer=False): {theirs['single']['acks_per_s']:,.1f}/s; searchable "
        f"{theirs['single']['searchable_seconds']:.1f} s | "
        f"{ours['single']['acks_per_s'] / theirs['single']['acks_per_s']:.1f} | — | — |",
        f"| peers, batched until searchable | {_n(p['texts'])} texts in batches of "
        f"{p['batch']} per user: **{ours['batch']['searchable_seconds']:.1f} s** (acked "
        f"{ours['batch']['ack_seconds']:.1f} s) | {peer}: "
        f"{theirs['batch']['searchable_seconds']:.1f} s; raw embedding floor (same model, "
        f"same texts, batches of 64): {floor['seconds']:.1f} s | "
        f"{ours['batch']['searchable_seconds'] / floor['seconds']:.2f} of the floor | — | — |",
        f"| peers, search filtered to one user | {p['questions']} questions, k "
        f"{p['k']}, p50 / p95: **{ms(ours['search'])}** (hit rate "
        f"{ours['search']['hit_rate']:.2f}) | {peer}: {ms(theirs['search'])} (hit rate "
        f"{theirs['search']['hit_rate']:.2f}) | "
        f"{ours['search']['p50_ms'] / theirs['search']['p50_ms']:.2f} | — | — |",
    ]
    for op in ("get", "history", "update", "delete"):
        rows.append(
            f"| peers, {op} | {ours[op]['n']} calls, p50 / p95: **{ms(ours[op])}** | "
            f"{peer}: {ms(theirs[op])} | {ours[op]['p50_ms'] / theirs[op]['p50_ms']:.2f} "
            "| — | — |"
        )
    return rows


def _access_rows(d: dict[str, Any]) -> list[str]:
    p, r, g = d["parameters"], d["results"], d["goals"]
    rows = []
    for kind, what in (("text", "with the query text"), ("vector", "with a query vector")):
        on, off = r[f"{kind}_on_p95"]["median"], r[f"{kind}_off_p95"]["median"]
        rows.append(
            f"| access log, search {what} | `MemoryStore.search` ({_n(p['memories'])} "
            f"memories, k {p['k']}, {_n(p['calls_per_arm'])} searches each way, interleaved) "
            f"with every search recorded, p95: **{on:.2f} ms** (p50 "
            f"{r[f'{kind}_on_p50']['median']:.2f}) | the same searches, access log off: "
            f"{off:.2f} ms (p50 "
            f"{r[f'{kind}_off_p50']['median']:.2f}) | {r[f'{kind}_p95_ratio']['median']:.3f} | "
            f"p95 ratio ≤ {g['p95_ratio']} | {_ok(r['meets'][f'{kind}_p95_ratio'])} |"
        )
    rows.append(
        f"| access log, recording | a search recorded: **{r['hook_us']:.2f} µs** "
        f"on the read path; the writer thread {r['writer_us_per_record']:.1f} µs per record "
        "(in the background) | — | — | — | — |"
    )
    return rows


def _pr(d: dict[str, Any]) -> str:
    return f"P {d['precision']:.3f} / R {d['recall']:.3f}"


def _sensitive_rows(d: dict[str, Any]) -> list[str]:
    p, r, goals = d["parameters"], d["results"], d["goals"]
    head = r[r["headline"]]
    test, dev = head["test"], head["dev"]
    other = r["no_names"] if r["headline"] == "names" else None
    names = head["scanner"]["name_model"] or "no name model"
    types = ", ".join(
        f"{t} {c['precision']:.2f}/{c['recall']:.2f}"
        for t, c in test["per_type"].items()
        if c["reported"] and c["precision"] is not None and c["recall"] is not None
    )
    lat = head["latency"]
    rows = [
        f"| sensitive, held-out set | `SensitiveScanner.scan` on `test.jsonl` "
        f"({p['splits']['test']} texts, {test['texts_with_values']} with values; never tuned "
        f"on), same type and overlapping span, names by {names}: "
        f"**{_pr(test['overall'])}** (F1 {test['overall']['f1']:.3f}); exact spans "
        f"{_pr(test['strict'])}; negatives flagged {test['negatives_flagged']} of "
        f"{test['negatives']}; on `dev.jsonl` (tuned on): {_pr(dev['overall'])} | "
        + (
            f"without names (blank tokenizer, person not reported): {_pr(other['test']['overall'])}"
            if other is not None
            else "—"
        )
        + f" | — | P ≥ {goals['precision']}, R ≥ {goals['recall']} | "
        f"{_ok(r['meets']['precision'])} / {_ok(r['meets']['recall'])} |",
        f"| sensitive, per type (test) | precision/recall: {types} | — | — | — | — |",
        f"| sensitive, latency | one text at a time ({lat['texts']} texts, "
        f"{lat['mean_chars']:.0f} characters on average), p50 / p95: "
        f"**{lat['p50_ms']['median']:.2f} ms** / {lat['p95_ms']['median']:.2f} ms; loading "
        f"{head['load_seconds']:.1f} s"
        + (f" after {r['import_seconds']:.1f} s of imports" if "import_seconds" in r else "")
        + " | "
        + (
            f"without names: {other['latency']['p50_ms']['median']:.2f} ms / "
            f"{other['latency']['p95_ms']['median']:.2f} ms"
            if other is not None
            else "—"
        )
        + " | — | — | — |",
    ]
    return rows


def _pubsub_rows(d: dict[str, Any]) -> list[str]:
    p, g, r = d["parameters"], d["goals"], d["results"]
    pi, ri = p["ingest"], r["ingest"]
    kinds = pi["filters"]
    ratio, sustained = ri["ratio"], ri["sustained_ratio"]
    goal = g["ingest"]["ratio"]
    rows = [
        f"| pubsub, ingest with {_n(pi['subscriptions'])} subscriptions | SDK `append` of "
        f"{_n(pi['events'])} events (batches of {pi['batch_size']}, search indexes on, "
        f"vectors from the cache) with {_n(pi['subscriptions'])} subscriptions consumed "
        f"({kinds.get('semantic', 0)} semantic; {ri['deliveries_per_event']:.2f} deliveries "
        f"per event, drained by {pi['drain_threads']} threads waiting on a `ReadySet`): "
        f"**{_n(ri['subscribed_events_per_s']['median'])} ev/s**; sustained until every "
        f"subscription is drained: {_n(ri['subscribed_sustained_events_per_s']['median'])} "
        f"ev/s | the same ingest, no subscription: "
        f"{_n(ri['baseline_events_per_s']['median'])} ev/s; sustained until indexed: "
        f"{_n(ri['baseline_sustained_events_per_s']['median'])} ev/s | "
        f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f}); sustained "
        f"{sustained['median']:.2f} ({sustained['min']:.2f}-{sustained['max']:.2f}) | "
        f"ratio ≥ {goal} | {_ok(ri['meets_ratio'])} / {_ok(ri['meets_sustained_ratio'])} |",
    ]
    pl, rl = p["latency"], r["latency"]
    plain, sem, emb = rl["plain"], rl["semantic"], rl["embedded"]
    gl = g["latency"]
    rows.append(
        f"| pubsub, delivery latency | append acknowledged (HTTP) → delivery read over SSE "
        f"(`memstream serve`), one append at a time at {pl['pace_per_s']:g}/s, a namespace "
        f"filter: p50 **{plain['p50_ms']['median']:.1f} ms**, p99 "
        f"**{plain['p99_ms']['median']:.1f} ms** (from the append's request: "
        f"{plain['send_to_receipt_p50_ms']['median']:.1f} / "
        f"{plain['send_to_receipt_p99_ms']['median']:.1f} ms); a semantic filter, "
        f"{pl['semantic_pace_per_s']:g}/s, the model embedding each text: p50 "
        f"{sem['p50_ms']['median']:.1f} ms, p99 {sem['p99_ms']['median']:.1f} ms; in process "
        f"(no HTTP), acknowledged → delivered {emb['p50_ms']['median']:.2f} ms (p50; the "
        f"core projection's commit, which a delivery does not wait for: "
        f"{emb['ack_to_committed_p50_ms']['median']:.1f} ms) | — | — | "
        f"p50 ≤ {gl['p50_ms']:g} ms, p99 ≤ {gl['p99_ms']:g} ms | "
        f"{_ok(rl['meets_p50'])} / {_ok(rl['meets_p99'])} |"
    )
    pc, rc = p["catchup"], r["catchup"]
    gc = g["catchup"]
    rows.append(
        f"| pubsub, catch-up | a subscription from the beginning of {_n(pc['events'])} events, "
        f"`next` and `ack_upto` every {_n(pc['ack_every'])}: matching everything "
        f"**{_n(rc['all_deliveries_per_s']['median'])} deliveries/s**; matching a tenth "
        f"({_n(pc['tenth_matches'])}): {_n(rc['tenth_scanned_per_s']['median'])} events/s "
        f"read | `follow(0)` over the same log: {_n(rc['follow_events_per_s']['median'])} "
        f"ev/s | {rc['ratio_all_to_follow']['median']:.2f}; a tenth "
        f"{rc['ratio_tenth_to_follow']['median']:.2f} | ≥ {_n(gc['events_per_s'])} ev/s | "
        f"{_ok(rc['meets_goal'])} / {_ok(rc['meets_goal_tenth'])} |"
    )
    return rows


_ROWS = {
    "ingest": _ingest_rows,
    "project": _project_rows,
    "replay": _replay_rows,
    "open": _open_rows,
    "search": _search_rows,
    "reads": _reads_rows,
    "kafka": _kafka_rows,
    "erasure": _erasure_rows,
    "access": _access_rows,
    "sensitive": _sensitive_rows,
    "pubsub": _pubsub_rows,
    "peers": _peers_rows,
}


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown summary of the suites in ``results`` (name → suite JSON)."""
    lines = [
        "| suite | measured (median) | baseline, same run | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for name in SUITE_ORDER:
        if name in results:
            lines.extend(_ROWS[name](results[name]))
    notes = []
    for name in SUITE_ORDER:
        if name not in results:
            continue
        d = results[name]
        m = d["machine"]
        notes.append(
            f"- `{name}`: {d['timestamp']}, scale {d['scale']}, {d['parameters']['repeats']} "
            f"repeats; {m['cpu_usable']} CPUs ({m['cpu_model']}), Python {m['python']}, "
            f"DuckDB {m['libraries'].get('duckdb')}, SQLite {m['libraries'].get('sqlite')}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write_summary(out: Path) -> Path:
    """``<out>/summary.md`` from the suite JSON files in ``out``."""
    text = "# memstream benchmark summary\n\n" + table(load(out))
    path = out / "summary.md"
    path.write_text(text)
    return path


def update_docs(doc: Path, out: Path) -> None:
    """Replace the summary block of a markdown document (between the markers)."""
    text = doc.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{doc} has no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + "\n" + table(load(out)) + END + tail)
