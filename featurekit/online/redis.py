"""The shared online store: a Redis server that every serving host reads.

Layout (``P`` is the configured ``key_prefix``, default ``fk:``; tables are validated names
``<view>__v<N>``, which hold no ``:``)::

    P tables            hash   table -> its feature columns (JSON): what tables() lists
    P s:<table>         string the same feature list, read in the same MGET as the rows
    P i:<table>         set    encoded keys of rows the newest-only script added }  the table's index:
    P l:<table>         list   encoded keys of rows a first load added          }  what drop_table deletes by
    P r:<table>:<key>   string one entity's newest row (featurekit.online.redis_rows)

Keys are encoded canonically, never hashed: ``i<decimal>`` for an integer, ``s<text>`` for a
string (a composite key is already one unambiguous JSON string), so ``1`` and ``"1"`` are two rows
and no two keys can collide.

Writes are newest-only on the server: one Lua script (run by EVALSHA; loaded again when Redis
answers NOSCRIPT, as after a restart) compares the stored (event, created) with the new row's and
writes row and index entry in one atomic step, for up to ``_WRITE_CHUNK`` rows per call; the
calls of a write are pipelined, so a write of N rows takes about N / 50,000 round trips, never N.
A write into an empty table (its index holds no key: a first load) whose keys are distinct takes a
fast path: per chunk, an RPUSH of the keys to the index's list, then one MSETNX of the rows,
which writes all of them only if none exists. Where no row exists every new row is the newest, so
that is newest-only too, at a fifth of the script's server time (a list takes keys at a tenth of a
set's cost: 100,000 keys 0.01 s instead of 0.06-0.13 s; a key in it twice, from a resent stream, is
unlinked twice by a drop, which is harmless); a chunk that MSETNX refuses (a push
or another load wrote one of its keys in between) goes through the script, and so does the rest
of the write. The index entries go first, so a kill in between leaves at most index entries
without a row (reads find nothing, a drop unlinks nothing), never a row outside the index.
Each row is atomic (readers see it old or new); a write as a whole is not one transaction: a big
write would block every reader of the server for its whole duration. A lookup request over any
number of tables is one MGET (several pipelined beyond 10,000 keys): one round trip.
``drop_table`` pops the table's index (the set, then the list) in batches and UNLINKs those rows
by one script per batch; it never scans the keyspace.

An unreachable server is a :class:`StorageError` naming the URL (never its password) within the
configured timeouts; redis-py reconnects on the next call once the server is back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from featurekit import faults
from featurekit.errors import ConfigError, StorageError
from featurekit.online.base import Key, OnlineRows
from featurekit.online.redis_rows import decode_row, encode_redis_key, encode_rows, pack_rows, packed_parts

if TYPE_CHECKING:
    from featurekit.config import RedisOnlineConfig

T = TypeVar("T")

_WRITE_CHUNK = 1_000  # rows per script call: about a millisecond of the server's time
_CALLS_PER_ROUND_TRIP = 50  # script calls pipelined per round trip
_DROP_BATCH = 1_000  # rows unlinked per script call
_READ_CHUNK = 10_000  # keys per MGET of a big read

# Lua: whether the row ``new`` for KEYS[i] is at least as new as the stored one (``take``), by
# the 16-byte (event, created) header every row starts with; ``old`` is the stored header ("" if none).
_TAKE_IF_NEWER = """
  local old = redis.call('GETRANGE', KEYS[i], 0, 15)
  local take = true
  if #old == 16 then
    local a1, a2, a3, a4 = struct.unpack('>i4I4i4I4', new)
    local b1, b2, b3, b4 = struct.unpack('>i4I4i4I4', old)
    if a1 ~= b1 then take = a1 > b1
    elseif a2 ~= b2 then take = a2 > b2
    elseif a3 ~= b3 then take = a3 > b3
    else take = a4 >= b4 end
  end
"""

# KEYS[1]: the table's index; KEYS[2..]: row keys. ARGV[1]: how many bytes of a row key precede
# the encoded key; ARGV[2..]: the rows. A row is written when it is at least as new as the stored
# one (equal age: the later write wins); a new row also enters the index, in the same step.
WRITE_SCRIPT = (
    """
local skip = tonumber(ARGV[1])
local added = {}
local written = 0
for i = 2, #KEYS do
  local new = ARGV[i]"""
    + _TAKE_IF_NEWER
    + """  if take then
    redis.call('SET', KEYS[i], new)
    written = written + 1
    if #old == 0 then added[#added + 1] = string.sub(KEYS[i], skip + 1) end
  end
end
if #added > 0 then redis.call('SADD', KEYS[1], unpack(added)) end
return written
"""
)

# The rows of several tables for some keys, each key's rows in one atomic step (write_joint).
# ARGV[1]: n, the number of tables; KEYS[1..n]: their indexes; ARGV[2..n+1]: how many bytes of a
# row key of each table precede the encoded key; KEYS[n+1..]: row keys, key by key (the key's row
# in table 1, ..., in table n); ARGV[i+1]: the row of KEYS[i]. Each row is newest-only as in
# WRITE_SCRIPT.
JOINT_SCRIPT = (
    """
local n = tonumber(ARGV[1])
local added = {}
for t = 1, n do added[t] = {} end
local written = 0
for i = n + 1, #KEYS do
  local t = (i - n - 1) % n + 1
  local new = ARGV[i + 1]"""
    + _TAKE_IF_NEWER
    + """  if take then
    redis.call('SET', KEYS[i], new)
    written = written + 1
    if #old == 0 then added[t][#added[t] + 1] = string.sub(KEYS[i], tonumber(ARGV[t + 1]) + 1) end
  end
end
for t = 1, n do
  if #added[t] > 0 then redis.call('SADD', KEYS[t], unpack(added[t])) end
end
return written
"""
)

# KEYS[1], KEYS[2]: the table's index (set, list). ARGV[1]: the table's row-key prefix; ARGV[2]:
# the batch size. Popping the members and unlinking their rows is one step: a kill leaves no row
# outside the index. The set first; once it is empty, the list.
DROP_SCRIPT = """
local batch = tonumber(ARGV[2])
local members = redis.call('SPOP', KEYS[1], batch)
if #members == 0 then
  members = redis.call('LRANGE', KEYS[2], 0, batch - 1)
  if #members == 0 then return 0 end
  redis.call('LTRIM', KEYS[2], #members, -1)
end
local keys = {}
for i, member in ipairs(members) do keys[i] = ARGV[1] .. member end
redis.call('UNLINK', unpack(keys))
return #members
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def public_url(url: str) -> str:
    """``url`` without its user, password and query (which may carry a password)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _whole(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row


def _none(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return ()


def _one(position: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    return lambda row: (row[position],)


def _packed(args: list[bytes]) -> bytes:
    """One command in the Redis protocol (RESP): ``*<count>``, then ``$<length>`` and each argument."""
    parts: list[bytes] = [b""] * (2 * len(args))
    parts[0::2] = [b"$%d" % len(arg) for arg in args]
    parts[1::2] = args
    return b"*%d\r\n" % len(args) + b"\r\n".join(parts) + b"\r\n"


class RedisOnlineStore:
    """Newest rows per entity in Redis strings; see the module docstring for the layout."""

    def __init__(self, settings: RedisOnlineConfig) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ConfigError(
                "online.type is redis, but the redis client is not installed; run pip install 'featurekit[redis]'"
            ) from exc
        self.url = public_url(settings.url)
        self.prefix = settings.key_prefix
        self._errors = redis.exceptions
        try:
            # One immediate retry: a pooled connection that died with a restarted server is
            # replaced at once; an unreachable server still fails within about twice the timeouts.
            self._pool = redis.BlockingConnectionPool.from_url(
                settings.url,
                max_connections=settings.max_connections,
                timeout=settings.pool_timeout_s,
                socket_timeout=settings.socket_timeout_s,
                socket_connect_timeout=settings.connect_timeout_s,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigError(
                f"online.url {self.url!r} is not a Redis URL ({exc}); "
                "use redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path"
            ) from exc
        # Any: redis-py's annotations are partial (bytes | str replies, untyped execute_command).
        self._client: Any = redis.Redis(connection_pool=self._pool)
        self._registry = f"{self.prefix}tables"
        self._schemas: dict[bytes, list[str]] = {}  # a table's stored feature list (JSON) -> the list
        self._positions: dict[tuple[bytes, tuple[str, ...]], Callable[[tuple[Any, ...]], Sequence[Any]]] = {}

    # -- keys ---------------------------------------------------------------------------------

    def _schema_key(self, table: str) -> str:
        return f"{self.prefix}s:{table}"

    def _index_key(self, table: str) -> str:
        return f"{self.prefix}i:{table}"

    def _list_key(self, table: str) -> str:
        return f"{self.prefix}l:{table}"

    def _rows_prefix(self, table: str) -> str:
        return f"{self.prefix}r:{table}:"

    # -- errors -------------------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str, consequence: str) -> Iterator[None]:
        """Turn redis-py's errors into a :class:`StorageError` saying what failed and how to fix it."""
        errors = self._errors
        try:
            yield
        except errors.AuthenticationError as exc:
            raise StorageError(
                f"{what} failed: Redis at {self.url} refused the credentials ({exc}); {consequence}. "
                "Fix the user and password in online.url"
            ) from exc
        except (errors.ConnectionError, errors.TimeoutError) as exc:
            if str(exc).startswith("No connection available"):
                cause = f"every one of the online.max_connections connections to Redis at {self.url} stayed busy"
                fix = "Raise online.max_connections or online.pool_timeout_s in featurekit.yaml"
            else:
                cause = f"Redis at {self.url} did not answer ({exc})"
                fix = "Start Redis or fix online.url in featurekit.yaml; the store reconnects by itself once it answers"
            raise StorageError(f"{what} failed: {cause}; {consequence}. {fix}") from exc
        except errors.ResponseError as exc:
            hint = "check the Redis server's log"
            if str(exc).startswith("OOM"):
                hint = "raise Redis' maxmemory or free memory"
            elif str(exc).startswith("READONLY"):
                hint = "point online.url at the primary, not a replica"
            raise StorageError(
                f"{what} failed: Redis at {self.url} refused it ({exc}); {consequence}. Then {hint}"
            ) from exc
        except errors.RedisError as exc:  # anything else redis-py raises (a garbled reply, a client limit)
            raise StorageError(
                f"{what} failed: the Redis client for {self.url} raised {type(exc).__name__} ({exc}); "
                f"{consequence}. Check the Redis server and the online settings in featurekit.yaml"
            ) from exc

    def _call(self, what: str, consequence: str, call: Callable[[], T]) -> T:
        with self._calling(what, consequence):
            return call()

    # -- tables -------------------------------------------------------------------------------

    def create_table(self, table: str, features: Sequence[str]) -> None:
        encoded = json.dumps(list(features))

        def create() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._schema_key(table), encoded, nx=True)
            pipe.hsetnx(self._registry, table, encoded)
            pipe.execute()

        self._call(f"creating online table {table}", "nothing was written", create)

    def tables(self) -> dict[str, list[str]]:
        found = self._call(
            "listing the online tables", "nothing was read", lambda: self._client.hgetall(self._registry)
        )
        return {name.decode(): json.loads(found[name]) for name in sorted(found)}

    def drop_table(self, table: str) -> None:
        index, listed, rows = self._index_key(table), self._list_key(table), self._rows_prefix(table)
        consequence = "the table may be partly deleted; run the same command again to finish"

        def drop() -> None:
            # Readers first: without its feature list a table reads as missing while its rows go.
            self._client.delete(self._schema_key(table))
            while True:
                popped = self._run_script(DROP_SCRIPT, [(2, index, listed, rows, _DROP_BATCH)] * _CALLS_PER_ROUND_TRIP)
                if popped[-1] == 0:  # (the calls run in order: the last found both parts of the index empty)
                    break
            self._client.hdel(self._registry, table)  # last: an interrupted drop stays listed

        self._call(f"dropping online table {table}", consequence, drop)

    # -- scripts ------------------------------------------------------------------------------

    def _pipelined(self, sha: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", sha, *call)
        results: list[Any] = pipe.execute(raise_on_error=False)
        return results

    def _run_script(self, script: str, calls: Sequence[Sequence[Any]]) -> list[int]:
        """Run ``script`` once per call (``numkeys, *keys, *args``), pipelined: one round trip.

        On NOSCRIPT (a restarted or flushed server) the script is loaded and the calls are run
        again from the first refused one, in order: a later call's equal-age row still wins, and
        calls done twice change nothing, since the scripts only take rows at least as new.
        """
        sha = _sha(script)
        results = self._pipelined(sha, calls)
        refused = [i for i, r in enumerate(results) if isinstance(r, self._errors.NoScriptError)]
        if refused:
            self._client.script_load(script)
            results = results[: refused[0]] + self._pipelined(sha, calls[refused[0] :])
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [int(r) for r in results]

    # -- rows ---------------------------------------------------------------------------------

    def _schema(self, raw: bytes) -> list[str]:
        features = self._schemas.get(raw)
        if features is None:
            features = json.loads(raw)
            self._schemas[raw] = features
        return features

    def write(self, table: str, rows: OnlineRows) -> int:
        if not len(rows):
            return 0
        what = f"writing online table {table}"
        consequence = (
            "rows before the failure may be written (each row whole, old or new); running the same command "
            "again converges, since the store keeps only rows at least as new as its own"
        )
        features, stored = self._call(what, "nothing was written", lambda: self._features_and_size(table))
        if features is None:
            raise StorageError(f"{what} failed: Redis at {self.url} has no such table; create it first")
        packed = packed_parts(rows, features)  # encoded ahead (a materialization does it beside its write)
        if packed is None:
            ahead = pack_rows(rows, features)
            packed = ahead.members, ahead.blobs
        members, blobs = packed
        # An empty table takes the fast path, unless a key repeats: MSETNX would keep the last of
        # two rows of one key, not the newer.
        fresh = stored == 0 and len(set(members)) == len(members)
        if faults.armed():  # the crash tests need a moment with half of the rows written
            half = len(members) // 2
            written = self._call(what, consequence, lambda: self._write(table, members[:half], blobs[:half], fresh))
            faults.checkpoint("online.mid_upsert")
            members, blobs = members[half:], blobs[half:]
            return written + self._call(what, consequence, lambda: self._write(table, members, blobs, False))
        return self._call(what, consequence, lambda: self._write(table, members, blobs, fresh))

    def write_joint(self, writes: Sequence[tuple[str, OnlineRows]]) -> int:
        """Each key's rows of every table in one script call (atomic), a chunk of keys per call."""
        if not writes or not len(writes[0][1]):
            return 0
        tables = [table for table, _ in writes]
        what = f"writing online tables {', '.join(tables)}"
        consequence = (
            "the rows of the keys before the failure may be written (each key's rows together, old or new); "
            "running the same command again converges, since the store keeps only rows at least as new as its own"
        )

        def schemas() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for table in tables:
                pipe.get(self._schema_key(table))
            found: list[Any] = pipe.execute()
            return found

        columns: list[list[bytes]] = []
        keys: list[list[bytes]] = []
        prefixes: list[bytes] = []
        for (table, rows), raw in zip(writes, self._call(what, "nothing was written", schemas), strict=True):
            if raw is None:
                raise StorageError(f"{what} failed: Redis at {self.url} has no table {table}; create it first")
            features = self._schema(raw)
            columns.append(encode_rows(rows.event_us, rows.created_us, [rows.columns[f] for f in features]))
            prefix = self._rows_prefix(table).encode()
            prefixes.append(prefix)
            keys.append([prefix + encode_redis_key(k).encode() for k in rows.keys])
        indexes = [self._index_key(t) for t in tables]
        skips = [len(tables), *(len(p) for p in prefixes)]
        per_call = max(1, _WRITE_CHUNK // len(tables))
        calls = []
        for start in range(0, len(keys[0]), per_call):
            end = min(start + per_call, len(keys[0]))
            row_keys = [ks[i] for i in range(start, end) for ks in keys]
            blobs = [cs[i] for i in range(start, end) for cs in columns]
            calls.append((len(indexes) + len(row_keys), *indexes, *row_keys, *skips, *blobs))
        written = 0
        per_trip = _CALLS_PER_ROUND_TRIP
        for trip in range(0, len(calls), per_trip):
            batch = calls[trip : trip + per_trip]

            def run(batch: list[tuple[Any, ...]] = batch) -> list[int]:
                return self._run_script(JOINT_SCRIPT, batch)

            written += sum(self._call(what, consequence, run))
            if faults.armed() and trip == 0:  # the crash tests need a moment with some keys written
                faults.checkpoint("online.mid_upsert")
        return written

    def _features_and_size(self, table: str) -> tuple[list[str] | None, int]:
        """The table's feature list and how many keys its index holds, in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self._schema_key(table))
        pipe.scard(self._index_key(table))
        pipe.llen(self._list_key(table))
        raw, size, listed = pipe.execute()
        return (None if raw is None else self._schema(raw)), int(size) + int(listed)

    def _write(self, table: str, members: list[bytes], blobs: list[bytes], fresh: bool) -> int:
        """Write the rows of ``members`` (encoded keys) in pipelined round trips, fast while ``fresh``."""
        index, prefix = self._index_key(table), self._rows_prefix(table).encode()
        written = 0
        per_trip = _WRITE_CHUNK * _CALLS_PER_ROUND_TRIP
        skip = len(prefix)
        for trip in range(0, len(members), per_trip):
            starts: Sequence[int] = range(trip, min(trip + per_trip, len(members)), _WRITE_CHUNK)
            if fresh:
                refused = self._write_new(self._list_key(table), prefix, members, blobs, starts)
                written += (min(trip + per_trip, len(members)) - trip) - sum(
                    len(members[start : start + _WRITE_CHUNK]) for start in refused
                )
                if not refused:
                    continue
                fresh, starts = False, refused  # someone else writes this table: compare ages from now on
            calls = []
            for start in starts:
                chunk = [prefix + m for m in members[start : start + _WRITE_CHUNK]]
                calls.append((1 + len(chunk), index, *chunk, skip, *blobs[start : start + len(chunk)]))
            written += sum(self._run_script(WRITE_SCRIPT, calls))
        return written

    def _write_new(
        self, index: str, prefix: bytes, members: list[bytes], blobs: list[bytes], starts: Sequence[int]
    ) -> list[int]:
        """RPUSH to the ``index`` list then MSETNX of each chunk at ``starts``, pipelined; the starts of the
        refused chunks.

        Each chunk's commands are packed and sent before the next chunk's are built, and the replies
        read after the last: one round trip, with the server working through a chunk while this
        process packs the next. (Packed here: redis-py's packer costs three times as much per value.)
        """
        target = index.encode()

        def commands() -> Iterator[bytes]:
            for start in starts:
                chunk = members[start : start + _WRITE_CHUNK]
                pairs: list[bytes] = [b""] * (2 * len(chunk))
                pairs[0::2] = [prefix + m for m in chunk]
                pairs[1::2] = blobs[start : start + len(chunk)]
                yield _packed([b"RPUSH", target, *chunk]) + _packed([b"MSETNX", *pairs])

        replies = self._stream(commands, 2 * len(starts))
        return [start for start, done in zip(starts, replies[1::2], strict=True) if not done]

    def _stream(self, commands: Callable[[], Iterator[bytes]], count: int) -> list[Any]:
        """Send every packed command of ``commands()`` on one connection, then read its ``count`` replies.

        A connection that fails is dropped (never returned to the pool with replies unread) and the
        whole stream is sent once more on a new one, as the client's one retry does for its own
        commands; the fast path's commands may run twice (RPUSH lists keys twice, MSETNX refuses).
        """
        errors = self._errors
        for attempt in (1, 2):
            pool: Any = self._pool  # (redis-py's pool methods are unannotated)
            connection = pool.get_connection()
            try:
                for packed in commands():
                    connection.send_packed_command([packed], check_health=False)
                return [connection.read_response() for _ in range(count)]
            except (errors.ConnectionError, errors.TimeoutError):
                connection.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
        raise AssertionError("unreachable")

    def read(self, table: str, features: Sequence[str], keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        return self.read_many([(table, features, keys)])[0]

    def read_many(self, reads: Sequence[tuple[str, Sequence[str], Sequence[Key]]]) -> list[dict[Key, tuple[Any, ...]]]:
        """Every table's rows in one MGET: the tables' feature lists first, then each table's rows."""
        names = [self._schema_key(table) for table, _, _ in reads]
        for table, _, keys in reads:
            prefix = self._rows_prefix(table)
            # (integer keys inline: the common case, and a lookup's hot loop)
            names += [f"{prefix}i{k}" if type(k) is int else prefix + encode_redis_key(k) for k in keys]
        if not reads:
            return []
        with self._calling("reading the online store", "nothing was read"):
            values = self._mget(names)
        results: list[dict[Key, tuple[Any, ...]]] = []
        offset = len(reads)
        for position, (table, features, keys) in enumerate(reads):
            found: dict[Key, tuple[Any, ...]] = {}
            stored = values[position]
            blobs = values[offset : offset + len(keys)]
            offset += len(keys)
            if stored is not None:  # no feature list: the table does not exist (or is being dropped)
                pick = self._picks(table, stored, features)
                for key, blob in zip(keys, blobs, strict=True):
                    if blob is not None:
                        event, created, row = decode_row(blob)
                        found[key] = (event, created, *pick(row))
            results.append(found)
        return results

    def _mget(self, names: list[str]) -> list[bytes | None]:
        """One MGET; a big read (a window state merge) as several pipelined, still one round trip.

        Chunks keep each command short, so the server starts answering within the socket timeout
        and other clients are not held up by one huge command.
        """
        if len(names) <= _READ_CHUNK:
            values: list[bytes | None] = self._client.execute_command("MGET", *names)
            return values
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(names), _READ_CHUNK):
            pipe.execute_command("MGET", *names[start : start + _READ_CHUNK])
        return [value for chunk in pipe.execute() for value in chunk]

    def _picks(self, table: str, stored: bytes, features: Sequence[str]) -> Callable[[tuple[Any, ...]], Sequence[Any]]:
        """What takes ``features`` out of a row of ``table`` (stored feature list ``stored``)."""
        cache_key = (stored, tuple(features))
        pick = self._positions.get(cache_key)
        if pick is None:
            have = self._schema(stored)
            missing = [f for f in features if f not in have]
            if missing:
                raise StorageError(
                    f"online table {table} in Redis at {self.url} has no feature {missing[0]!r} (it has {have}); "
                    "run `featurekit verify` to compare the online tables with the registry"
                )
            positions = [have.index(f) for f in features]
            if positions == list(range(len(have))):
                pick = _whole
            elif len(positions) <= 1:
                pick = _one(positions[0]) if positions else _none
            else:
                pick = itemgetter(*positions)
            self._positions[cache_key] = pick
        return pick

    def close(self) -> None:
        self._pool.disconnect()
