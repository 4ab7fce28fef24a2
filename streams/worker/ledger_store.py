"""Stage 1's local store: one RocksDB database per traces partition (an LSM tree, via ``rocksdict``).

It holds the partition's ledger (one entry per trace id seen within the feedback window), the source
offsets consumed up to, the outbox and the store's meta (source id, numbering, changelog marker). Each
micro-batch writes all of them in one ``WriteBatch``: atomic, with the write-ahead log on and no fsync,
so a killed process loses nothing (a power cut may: the changelog in Kafka is the truth, and a store
behind it is restored at the next takeover).

Why RocksDB and not SQLite (docs/decisions.md): trace ids are random, and a B-tree index on them dirties
pages all over the tree with every commit, so SQLite's insert rate fell by more than half as a partition's
ledger grew to the 20,000,000 entries of a 7-day window. An LSM tree writes sorted runs and merges them in
the background; with a Bloom filter per file a lookup of a new trace id (most lookups) rarely reads a
block. The rows themselves live in blob files, so that the merges move keys and not texts, and the filters
are cut into small partitions that a bounded cache can hold. Measured with ``bench/ledger_store.py``.

Keys (raw bytes) start with one letter naming what they hold:

====================  ==========================================================================
``L`` + trace id      the ledger row (:func:`streams.worker.ledger_rows.to_row`), msgpack
``T`` + touched + id  the expiry index, one record a commit: the ids it wrote, under the newest
                      ``touched`` among them as a big-endian double (sorts by time) and its first id
``O`` + topic, part   the next offset to consume, msgpack
``Q`` + seq           an outbox record (topic, key, value, headers as JSON), msgpack
``M`` + name          meta, JSON text
====================  ==========================================================================

An upserted entry leaves its older index record behind; expiry deletes an entry only when its row's own
``touched`` is past the cut-off, and every index record it passes.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import shutil
import struct
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import msgspec
from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompactionStyle,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from learning.state.ledger import LedgerEntry
from streams.errors import StateStoreError
from streams.worker import ledger_rows
from streams.worker.outbox_store import OutboxStore
from streams.worker.records import OutRecord, json_text

log = logging.getLogger(__name__)

# meta key: the outbox number of the last delta record, so that the chain of tl-prev links survives a restart
LAST_DELTA_KEY = "last_delta_seq"
# meta key: what the store knows of the last changelog record it is current with (changelog.identity)
CHANGELOG_KEY = "changelog_offset"

_LEDGER = b"L"
_EXPIRY = b"T"
_OFFSET = b"O"
_OUTBOX = b"Q"
_META = b"M"
_DOUBLE = struct.Struct(">d")
_SEQ = struct.Struct(">Q")

# Above this many ids a lookup runs in a thread, and above ``BIG_BATCH`` rows a write, as with stage 2's
# SQLite store. rocksdict holds the GIL through its calls, so the thread overlaps little of the loop's own work
# (a thread hop a batch is all it costs); what runs in parallel are RocksDB's flushes and compactions, on
# its own threads, without the GIL.
BIG_LOOKUP = 256
# Expiry deletes this many entries per write, taking the store's lock for each, so that a batch's
# commit waits for at most one chunk.
EXPIRY_CHUNK = 20_000
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tracelearn-ledger-lookup")

# One block cache for every partition's store in the process, so that memory does not grow with the
# partitions a worker owns: it holds data blocks, and the index and Bloom filter blocks too
# (``cache_index_and_filter_blocks``), which would otherwise grow with the ledger, outside any bound.
BLOCK_CACHE_BYTES = 64 << 20
# per store; RocksDB keeps up to two memtables of this size (one being flushed)
WRITE_BUFFER_BYTES = 32 << 20
# every store's memtables together, whatever the number of partitions: past it the largest is flushed
MEMTABLES_BYTES = 64 << 20
# a value at least this long goes to a blob file; shorter ones (offsets, meta, small outbox records)
# stay in the tree
MIN_BLOB_BYTES = 128
METADATA_BLOCK_BYTES = 4096
_cache: Cache | None = None
_memtables: WriteBufferManager | None = None

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _block_cache() -> Cache:
    global _cache
    if _cache is None:
        _cache = Cache(BLOCK_CACHE_BYTES)
    return _cache


def _memtable_budget() -> WriteBufferManager:
    global _memtables
    if _memtables is None:
        _memtables = WriteBufferManager(MEMTABLES_BYTES, False)
    return _memtables


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table = BlockBasedOptions()
    # 10 bits a key: about 1% false positives, so a lookup of a trace id never seen reads no data block
    table.set_bloom_filter(10, False)
    table.set_block_cache(_block_cache())
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    # Filters and indexes cut into 4 KiB partitions: a whole file's filter is one block otherwise, megabytes
    # that did not fit the cache's shards at 20,000,000 entries and were read again for every batch.
    table.set_partition_filters(True)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_metadata_block_size(METADATA_BLOCK_BYTES)
    table.set_pin_top_level_index_and_filter(True)
    options.set_block_based_table_factory(table)
    # the memtable's own filter: a lookup of a new id skips the skip-list search (2.0 to 0.8 us a key)
    options.set_memtable_whole_key_filtering(True)
    options.set_memtable_prefix_bloom_ratio(0.1)
    # Universal compaction rewrites each entry fewer times than levelled compaction (keys are random, so
    # every merge touches every file of a level); it costs more disk space in between.
    options.set_compaction_style(DBCompactionStyle.universal())
    # Values (ledger rows of about a kilobyte, outbox records) live in blob files and the tree holds the
    # keys: compactions then move keys, not texts, and at 20,000,000 entries read 60-190 MiB where they read
    # 1.5-2.8 GiB for 500,000 new entries (docs/decisions.md). Entries expire oldest first, so whole blob
    # files fall out of use; the collection rewrites what is still live in the oldest quarter.
    options.set_enable_blob_files(True)
    options.set_min_blob_size(MIN_BLOB_BYTES)
    options.set_blob_compression_type(DBCompressionType.lz4())
    options.set_enable_blob_gc(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_write_buffer_manager(_memtable_budget())
    options.set_max_background_jobs(2)
    return options


def _open(path: Path, access: AccessType | None = None) -> Rdict:
    options = _options()
    # The default column family's options given again: without them rocksdict reopens an existing store
    # with that family's options as read back from its OPTIONS file, where the Bloom filter is missing, and
    # a lookup of a new id then searched every file (13 us a key at 2,000,000 entries, against 1).
    families = {"default": _options()}
    if access is None:
        return Rdict(str(path), options, column_families=families)
    return Rdict(str(path), options, column_families=families, access_type=access)


def _multi_get(db: Rdict, keys: list[bytes]) -> list[bytes | None]:
    """The values of ``keys`` (None where missing), in one call."""
    return cast(list[bytes | None], db.get(cast(Any, keys)))


def _nulls(row: list[Any]) -> tuple[Any, ...]:
    # rows are written with NaN for NULL (ledger_rows.to_row); readers expect None, as SQLite gives
    return tuple(None if v != v else v for v in row)


def _expiry_record(rows: list[tuple[Any, ...]]) -> tuple[bytes, bytes]:
    """One expiry index record for a commit's ledger rows: keyed by the newest ``touched`` among them (and the
    first id, to be unique), holding every id. One record a commit, not one a row: a put per row cost as
    much as the row's own."""
    newest = max(row[1] for row in rows)
    ids = [row[0] for row in rows]
    return _EXPIRY + _DOUBLE.pack(newest) + ids[0].encode(), _encode(ids)


class LedgerStore(OutboxStore):
    """Stage 1's store for one traces partition (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: Rdict | None = None
        self._write_options = WriteOptions()
        self._write_options.sync = False
        # held by lookups in a thread and by close(); lookups do not wait for writes (RocksDB reads are
        # consistent while a batch is written)
        self._read_lock = threading.Lock()
        # the numbers of the outbox records stored, ascending
        self._outbox_seqs: list[int] = []

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        return self._db

    async def open(self) -> LedgerStore:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = _open(self.path)
        except Exception as exc:
            raise StateStoreError(
                f"cannot open state store {self.path}: {exc}. Stop the worker, move the state directory aside "
                "and restart (the state is restored from the changelog)."
            ) from exc
        source = await self.get_meta("source_id")
        if source is None:
            source = uuid.uuid4().hex[:12]
            await self.commit(meta={"source_id": source})
        self.source_id = str(source)
        pending = await self.pending()
        self._outbox_seqs = [r.seq for r in pending]
        last_seq = int(await self.get_meta("last_seq") or 0)
        self.next_seq = max(pending[-1].seq if pending else 0, last_seq) + 1
        return self

    async def close(self) -> None:
        with self._lock, self._read_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def delete_files(self) -> None:
        """Remove the store's files (it must be closed)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # -- reads ------------------------------------------------------------------------------------
    def _prefixed(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        it = self.db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            yield key, it.value()
            it.next()

    async def get_meta(self, key: str) -> Any:
        raw = self.db.get(_META + key.encode())
        return None if raw is None else json.loads(raw)

    async def offsets(self) -> dict[tuple[str, int], int]:
        found = {}
        for key, value in self._prefixed(_OFFSET):
            topic, part = _decode(key[1:])
            found[(topic, part)] = _decode(value)
        return found

    async def pending(self) -> list[OutRecord]:
        records = []
        for key, value in self._prefixed(_OUTBOX):
            topic, record_key, record_value, headers = _decode(value)
            records.append(
                OutRecord(
                    topic, record_key, record_value, OutRecord.headers_from_json(headers), _SEQ.unpack(key[1:])[0]
                )
            )
        return records

    async def ledger_entries(self, trace_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The stored ledger entries of these trace ids (those that have one)."""
        return await self.lookup_ledger(list(trace_ids))

    def lookup_ledger(self, trace_ids: list[str]) -> asyncio.Future[dict[str, LedgerEntry]]:
        """:meth:`ledger_entries` as a future; more than ``BIG_LOOKUP`` ids are looked up in a thread that
        starts at once, so that the caller can go on while RocksDB searches. It sees the last write."""
        loop = asyncio.get_running_loop()
        if len(trace_ids) > BIG_LOOKUP:
            return loop.run_in_executor(_LOOKUPS, self._read_ledger_locked, trace_ids)
        found = loop.create_future()
        try:
            found.set_result(self._read_ledger(trace_ids))
        except Exception as exc:
            found.set_exception(exc)
        return found

    def _read_ledger_locked(self, trace_ids: list[str]) -> dict[str, LedgerEntry]:
        with self._read_lock:
            return self._read_ledger(trace_ids)

    def _read_ledger(self, trace_ids: list[str]) -> dict[str, LedgerEntry]:
        if not trace_ids:
            return {}
        db = self._db
        if db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        values = _multi_get(db, [_LEDGER + t.encode() for t in trace_ids])
        return {
            trace_id: ledger_rows.from_row(_nulls(_decode(raw)))
            for trace_id, raw in zip(trace_ids, values, strict=True)
            if raw is not None
        }

    async def ledger_rows(self) -> list[tuple[Any, ...]]:
        """Every ledger row, as :func:`streams.worker.ledger_rows.to_row` builds them (for a snapshot)."""
        return [tuple(_decode(value)) for _, value in self._prefixed(_LEDGER)]

    async def has_ledger(self) -> bool:
        """Whether the ledger holds any entry."""
        return next(iter(self._prefixed(_LEDGER)), None) is not None

    # -- writes -----------------------------------------------------------------------------------
    async def commit(
        self,
        *,
        ledger: list[tuple[Any, ...]] | None = None,
        offsets: dict[tuple[str, int], int] | None = None,
        outbox: list[OutRecord] | None = None,
        meta: dict[str, Any] | None = None,
        acknowledged: int = 0,
        replace_outbox: bool = False,
    ) -> None:
        """One atomic write of everything a batch changed (in a thread when it is big).

        ``ledger`` holds rows of :func:`streams.worker.ledger_rows.to_row`. ``acknowledged``: outbox
        records up to this sequence number were acknowledged by the broker and go. Commits must not
        overlap: the caller awaits one before it starts the next.
        """
        batch = WriteBatch(raw_mode=True)
        kept = self._delete_outbox(
            batch, self._outbox_seqs[-1] if replace_outbox and self._outbox_seqs else acknowledged
        )
        if ledger:
            for row in ledger:
                batch.put(_LEDGER + row[0].encode(), _encode(row))
            batch.put(*_expiry_record(ledger))
        for (topic, part), offset in (offsets or {}).items():
            batch.put(_OFFSET + _encode((topic, part)), _encode(offset))
        for r in outbox or ():
            batch.put(_OUTBOX + _SEQ.pack(r.seq), _encode((r.topic, r.key, r.value, r.headers_json())))
        meta = dict(meta or {})
        if outbox:
            # the highest number ever handed out survives the outbox records' deletion after sending
            meta["last_seq"] = max(int(meta.get("last_seq", 0)), max(r.seq for r in outbox))
        for k, v in meta.items():
            batch.put(_META + k.encode(), json_text(v).encode())
        size = len(ledger or ()) + len(outbox or ())
        await self._write(size, self._apply, batch)
        self._outbox_seqs = kept + [r.seq for r in outbox or ()]

    def _delete_outbox(self, batch: WriteBatch, upto_seq: int) -> list[int]:
        """Delete the outbox records up to ``upto_seq`` in ``batch``; returns the numbers left.

        One point delete a record, not a range: RocksDB checks every range deletion still in the memtable
        on each read, and one a batch made reads slower as a worker ran (routing latency's p99 grew from
        150 to 500 ms over 20 s at 1,000 traces/s).
        """
        gone = bisect.bisect_right(self._outbox_seqs, upto_seq)
        for seq in self._outbox_seqs[:gone]:
            batch.delete(_OUTBOX + _SEQ.pack(seq))
        return self._outbox_seqs[gone:]

    def _apply(self, batch: WriteBatch) -> None:
        self.db.write(batch, self._write_options)

    async def acknowledge(self, upto_seq: int) -> None:
        batch = WriteBatch(raw_mode=True)
        kept = self._delete_outbox(batch, upto_seq)
        await self._write(0, self._apply, batch)
        self._outbox_seqs = kept

    async def expire_ledger(self, touched_before: float) -> int:
        """Delete ledger entries last changed before ``touched_before``; returns how many (in a thread)."""
        removed = 0
        while True:
            chunk = await asyncio.to_thread(self._locked, self._expire_chunk, touched_before)
            if chunk is None:
                return removed
            removed += chunk

    def _expire_chunk(self, touched_before: float) -> int | None:
        """Expire the commits of up to ``EXPIRY_CHUNK`` ids from the index; None when none is left before the
        cut-off."""
        if not touched_before > 0:  # a negative double's bytes sort after every positive one's
            return None
        end = _EXPIRY + _DOUBLE.pack(touched_before)
        index_keys: list[bytes] = []
        ids: dict[str, None] = {}
        it = self.db.iter()
        it.seek(_EXPIRY)
        while it.valid() and len(ids) < EXPIRY_CHUNK:
            key = it.key()
            if key >= end:
                break
            index_keys.append(key)
            ids.update(dict.fromkeys(_decode(it.value())))
            it.next()
        if not index_keys:
            return None
        trace_keys = [_LEDGER + t.encode() for t in ids]
        batch = WriteBatch(raw_mode=True)
        removed = 0
        for trace_key, raw in zip(trace_keys, _multi_get(self.db, trace_keys), strict=True):
            # an entry touched again since is in a newer index record: it stays
            if raw is not None and _decode(raw)[1] < touched_before:
                batch.delete(trace_key)
                removed += 1
        for key in index_keys:
            batch.delete(key)
        self.db.write(batch, self._write_options)
        return removed


# rows per write when importing a SQLite store
_IMPORT_CHUNK = 50_000


async def import_sqlite_store(path: Path, store: LedgerStore) -> int:
    """Copy a stage-1 SQLite store of an earlier version (:class:`streams.worker.state_store.PartitionDB`)
    into ``store`` and remove its files; returns the ledger entries copied.

    Its identity and numbering go last, and its files only after them: an import cut short runs again
    from the start at the next open (the rows it copied are written again, unchanged).
    """
    from streams.worker.state_store import PartitionDB

    old = await PartitionDB(path).open()
    try:
        copied = 0
        for rows in old.ledger_row_chunks(_IMPORT_CHUNK):
            await store.commit(ledger=rows)
            copied += len(rows)
        meta = await old.meta()
        await store.commit(offsets=await old.offsets(), outbox=await old.pending(), meta=meta, replace_outbox=True)
        await store.adopt(old.source_id, old.next_seq)
    finally:
        await old.close()
    old.delete_files()
    log.info("imported %d ledger entries from the SQLite store %s into %s", copied, path, store.path)
    return copied


def peek_offsets(path: Path) -> dict[tuple[str, int], int]:
    """The offsets stored at ``path``, read without taking the store (another process may have it open)."""
    db = _open(path, AccessType.read_only())
    try:
        it = db.iter()
        it.seek(_OFFSET)
        found = {}
        while it.valid() and it.key().startswith(_OFFSET):
            topic, part = _decode(it.key()[1:])
            found[(topic, part)] = _decode(it.value())
            it.next()
        return found
    finally:
        db.close()
