"""Mergeable summaries a profile is built from, each vectorized with numpy and serializable to JSON.

* :class:`ValueBuckets`: exact counts of values in log-linear buckets of the float64 line (the
  top ``1 + 11 + MANTISSA_BITS`` bits of a value's IEEE-754 pattern, as in HDR histograms). Two
  summaries merge exactly (counts add), a histogram on edges that are bucket boundaries is exact,
  and a percentile read from the buckets is within relative error :data:`RELATIVE_ERROR` of the
  order statistics it interpolates between.
* :class:`DistinctSketch`: the :data:`DISTINCT_CAP` smallest 64-bit hashes of the values seen
  (k minimum values). Exact while at most that many distinct values were seen; above, an estimate
  with relative standard error ``1 / sqrt(DISTINCT_CAP - 2)`` (2.2%).
* :class:`ValueCounts`: exact counts of categorical values while at most :data:`COUNTS_CAP`
  distinct values were seen; above, a Misra-Gries summary of that many counters, whose counts
  are low by at most ``rows / (COUNTS_CAP + 1)`` (mergeable: Agarwal et al., 2012).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

MANTISSA_BITS = 7  # 128 buckets per power of two
RELATIVE_ERROR = 2.0 ** -(MANTISSA_BITS + 1)  # 0.39%: half a bucket's width, relative to its values
DISTINCT_CAP = 2048  # 16 KiB of hashes per column at most (about 11 KiB compressed)
COUNTS_CAP = 2048
_SHIFT_BITS = 52 - MANTISSA_BITS
_SHIFT = np.uint64(_SHIFT_BITS)
_HASH_SHIFT = np.uint64(31)
_HASH_MULTIPLIER = np.uint64(0xFF51AFD7ED558CCD)  # murmur3's finalizer constant (odd)
_U64 = 2.0**64


def encode(array: np.ndarray) -> str:
    """A numpy array's bytes, compressed, as base64 text (the dtype is the reader's to know)."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 1)).decode()


def decode(text: str, dtype: type[np.generic]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).copy()


# -- value buckets ------------------------------------------------------------------------------


def bucket_keys(values: np.ndarray) -> np.ndarray:
    """Each float64 value's bucket as an int64 that sorts like the values (no NaNs allowed).

    Bucket ``k >= 0`` holds ``[low(k), low(k + 1))``; a negative ``k`` is the mirror image, made
    half-open the same way round by taking a magnitude's pattern minus one (``x`` in ``[-b, -a)``
    iff ``|x|`` in ``(a, b]``), so every bucket is ``[low(k), low(k + 1))`` on the real line.
    """
    bits = (values + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    keys = (bits >> _SHIFT).view(np.int64)
    negative = values < 0
    if negative.any():
        magnitude = (-values[negative]).view(np.uint64) - np.uint64(1)
        keys = keys.copy()
        keys[negative] = -1 - (magnitude >> _SHIFT).view(np.int64)
    return keys


def bucket_low(keys: np.ndarray) -> np.ndarray:
    """The smallest value of each bucket (see :func:`bucket_keys`)."""
    keys = np.asarray(keys, dtype=np.int64)
    low = np.empty(len(keys), dtype=np.float64)
    positive = keys >= 0
    low[positive] = (keys[positive].astype(np.uint64) << _SHIFT).view(np.float64)
    mirrored = (-1 - keys[~positive]).astype(np.uint64) + np.uint64(1)
    low[~positive] = -((mirrored << _SHIFT).view(np.float64))
    return low


def bucket_key(value: float) -> int:
    """:func:`bucket_keys` of one value (in plain integers: a fifth of the time of numpy's arrays of one)."""
    if value < 0:
        magnitude: int = struct.unpack("<Q", struct.pack("<d", -value))[0] - 1
        return -1 - (magnitude >> _SHIFT_BITS)
    key: int = struct.unpack("<Q", struct.pack("<d", value + 0.0))[0] >> _SHIFT_BITS
    return key


@dataclass
class ValueBuckets:
    """Counts per bucket, dense from bucket key ``low`` on (see the module docstring)."""

    low: int
    counts: np.ndarray

    @classmethod
    def empty(cls) -> ValueBuckets:
        return cls(0, np.empty(0, np.int64))

    @classmethod
    def of(cls, keys: np.ndarray, low: int, high: int | None = None, *, overwrite: bool = False) -> ValueBuckets:
        """The buckets of values with these keys (int64), none below ``low`` (nor above ``high``, if given).

        ``overwrite``: ``keys`` may be changed in place (work space of the caller's), which saves
        an array. Counted from ``low``, not from key 0: the counts then span the values' own
        range (a few thousand buckets for values within a few powers of two), where counting from
        0 would allocate and clear up to 2^19 of them per call. With ``high`` (the largest key),
        counted by ``np.add.at`` into counts of that span: the same counts as ``np.bincount``'s,
        in two thirds of its time (which first scans the keys for their extremes).
        """
        if not len(keys):
            return cls.empty()
        offsets = np.subtract(keys, low, out=keys if overwrite else None)
        if high is None:
            return cls(low, np.bincount(offsets).astype(np.int64, copy=False))
        counts = np.zeros(high - low + 1, dtype=np.int64)
        np.add.at(counts, offsets, 1)
        return cls(low, counts)

    def merge(self, other: ValueBuckets) -> ValueBuckets:
        if not len(self.counts):
            return other
        if not len(other.counts):
            return self
        low = min(self.low, other.low)
        high = max(self.low + len(self.counts), other.low + len(other.counts))
        counts = np.zeros(high - low, dtype=np.int64)
        counts[self.low - low : self.low - low + len(self.counts)] += self.counts
        counts[other.low - low : other.low - low + len(other.counts)] += other.counts
        return ValueBuckets(low, counts)

    @property
    def keys(self) -> np.ndarray:
        """The keys of the buckets holding values, ascending."""
        return np.flatnonzero(self.counts).astype(np.int64) + self.low

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def order_statistics(self, ranks: np.ndarray, low: float, high: float, *, integers: bool = False) -> np.ndarray:
        """Estimates of the values at 0-based ``ranks``: their bucket's middle, within ``[low, high]``.

        ``integers``: the values are integers, so a bucket at most 1 wide holds one value, which
        is then exact (counts and other small integers get exact percentiles).
        """
        keys = np.searchsorted(np.cumsum(self.counts), ranks, side="right") + self.low
        bottom = bucket_low(keys)
        with np.errstate(all="ignore"):  # the bucket of infinity has no top
            top = bucket_low(keys + 1)
            middle = (bottom + top) / 2
            if integers:
                middle = np.where(top - bottom <= 1, np.ceil(bottom), middle)
        # The buckets of infinity (no top) and of zero (which holds only subnormals besides it)
        middle = np.where(np.isinf(bottom) | (keys == 0), bottom, middle)
        return np.clip(middle, low, high)

    def quantiles(
        self, fractions: tuple[float, ...], low: float, high: float, *, integers: bool = False
    ) -> list[float]:
        """Linear-interpolated quantiles (DuckDB's ``quantile_cont``), each within relative error
        :data:`RELATIVE_ERROR` of the larger of the two order statistics it interpolates between."""
        n = self.total
        if not n:
            return []
        position = np.asarray(fractions, dtype=np.float64) * (n - 1)
        below = np.floor(position)
        lower = self.order_statistics(below.astype(np.int64), low, high, integers=integers)
        upper = self.order_statistics(np.minimum(below + 1, n - 1).astype(np.int64), low, high, integers=integers)
        with np.errstate(invalid="ignore"):  # equal infinite neighbours: inf - inf, kept as the value
            estimate = np.where(lower == upper, lower, lower + (position - below) * (upper - lower))
        return [float(v) for v in estimate]

    def histogram(self, edges: tuple[float, ...]) -> tuple[int, ...] | None:
        """Counts per bin of ``edges`` (see :mod:`featurekit.quality.profile`), or None if an edge is
        not a bucket boundary (the buckets then cannot tell which side of it a value is on)."""
        edge_array = np.asarray(edges, dtype=np.float64)
        if not on_bucket_grid(edges):
            return None
        present = np.flatnonzero(self.counts)
        bins = np.searchsorted(edge_array, bucket_low(present + self.low), side="right")
        counts = np.bincount(bins, weights=self.counts[present], minlength=len(edges) + 1)
        return tuple(int(c) for c in counts)

    def to_json(self) -> dict[str, str]:
        present = np.flatnonzero(self.counts)
        return {"keys": encode(np.diff(present + self.low, prepend=0)), "counts": encode(self.counts[present])}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> ValueBuckets:
        keys = np.cumsum(decode(data["keys"], np.int64))
        counts = decode(data["counts"], np.int64)
        if not len(keys):
            return cls.empty()
        dense = np.zeros(int(keys[-1] - keys[0]) + 1, dtype=np.int64)
        dense[keys - keys[0]] = counts
        return cls(int(keys[0]), dense)


def on_bucket_grid(edges: tuple[float, ...]) -> bool:
    """Whether every edge is a bucket boundary (so histograms on them can be read off the buckets)."""
    edge_array = np.asarray(edges, dtype=np.float64)
    return not len(edge_array) or bool(np.array_equal(bucket_low(bucket_keys(edge_array)), edge_array))


def snap_to_buckets(values: list[float]) -> tuple[float, ...]:
    """Each value's bucket boundary at or below it, ascending and without repeats (histogram edges)."""
    if not values:
        return ()
    snapped = bucket_low(bucket_keys(np.asarray(values, dtype=np.float64)))
    return tuple(float(v) for v in np.unique(snapped))


# -- distinct values ----------------------------------------------------------------------------


def hash_bits(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A bijective 64-bit mix of value patterns (an xor-shift, then an odd multiplier): distinct
    values never collide. Written into ``out`` when given (no allocation per block)."""
    mixed: np.ndarray = np.right_shift(bits, _HASH_SHIFT, out=out)
    np.bitwise_xor(mixed, bits, out=mixed)
    np.multiply(mixed, _HASH_MULTIPLIER, out=mixed)
    return mixed


def hash_objects(values: np.ndarray) -> np.ndarray:
    """64-bit hashes of strings or other objects (pandas' SipHash; collisions about n^2 / 2^65)."""
    return np.asarray(pd.util.hash_array(values, categorize=False), dtype=np.uint64)


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: a sort and a neighbour test (numpy's hash-based ``unique``
    takes five times as long on a few thousand hashes)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    kept: np.ndarray = ordered[keep]
    return kept


@dataclass
class DistinctSketch:
    """The smallest :data:`DISTINCT_CAP` distinct hashes seen, ascending (k minimum values)."""

    hashes: np.ndarray

    @classmethod
    def empty(cls) -> DistinctSketch:
        return cls(np.empty(0, np.uint64))

    def add(self, hashes: np.ndarray) -> DistinctSketch:
        if len(self.hashes) == DISTINCT_CAP:  # only hashes below the current k-th can enter
            hashes = hashes[hashes < self.hashes[-1]]
        if not len(hashes):
            return self
        if len(hashes) > 4 * DISTINCT_CAP:
            # Hashes are uniform: of n distinct values about 4 * cap fall below 4 * cap / n of the
            # range. That cut is one cheap pass; it holds the cap smallest distinct hashes whenever
            # it keeps at least cap distinct ones (else: few values repeat, and a hash-based unique
            # of them all is cheap).
            cut = np.uint64(min(_U64 - 1, _U64 * 4 * DISTINCT_CAP / len(hashes)))
            smallest = _distinct_sorted(hashes[hashes < cut])
            if len(smallest) >= DISTINCT_CAP and not len(self.hashes):  # sorted and distinct already
                return DistinctSketch(smallest[:DISTINCT_CAP])
            hashes = smallest if len(smallest) >= DISTINCT_CAP else pd.unique(hashes)
        return DistinctSketch(_distinct_sorted(np.concatenate([self.hashes, hashes]))[:DISTINCT_CAP])

    def merge(self, other: DistinctSketch) -> DistinctSketch:
        return self.add(other.hashes)

    @property
    def exact(self) -> bool:
        return len(self.hashes) < DISTINCT_CAP

    def estimate(self) -> int:
        """The distinct count: exact below the cap, else ``(k - 1) / (k-th smallest hash / 2^64)``."""
        if self.exact:
            return len(self.hashes)
        return round((DISTINCT_CAP - 1) / ((float(self.hashes[-1]) + 1.0) / _U64))

    def to_json(self) -> str:
        return encode(np.diff(self.hashes, prepend=np.uint64(0)))  # small gaps: their high bytes compress

    @classmethod
    def from_json(cls, text: str) -> DistinctSketch:
        return cls(np.cumsum(decode(text, np.uint64), dtype=np.uint64))


# -- categorical counts -------------------------------------------------------------------------


@dataclass
class ValueCounts:
    """Counts of categorical values (as strings): exact, or a Misra-Gries summary once capped.

    ``undercount`` bounds how much lower than the truth any count is (0 while exact).
    """

    counts: dict[str, int]
    undercount: int = 0

    @property
    def exact(self) -> bool:
        return self.undercount == 0

    @classmethod
    def of(cls, values: list[str], counts: np.ndarray) -> ValueCounts:
        """The counts of one batch (``values`` distinct), already cut to the cap if it has more."""
        undercount = 0
        if len(values) > COUNTS_CAP:
            cut = int(np.partition(counts, len(counts) - COUNTS_CAP - 1)[len(counts) - COUNTS_CAP - 1])
            keep = np.flatnonzero(counts > cut)
            values, counts, undercount = [values[i] for i in keep], counts[keep] - cut, cut
        return cls(dict(zip(values, (int(c) for c in counts), strict=True)), undercount)

    def merge(self, other: ValueCounts) -> ValueCounts:
        merged = dict(self.counts)
        for value, count in other.counts.items():
            merged[value] = merged.get(value, 0) + count
        undercount = self.undercount + other.undercount
        if len(merged) > COUNTS_CAP:
            # Misra-Gries merge: subtract the (cap + 1)-th largest count from every count, keep the
            # positive ones. The subtracted amount is the new error, at most rows / (cap + 1).
            cut = sorted(merged.values(), reverse=True)[COUNTS_CAP]
            merged = {v: c - cut for v, c in merged.items() if c > cut}
            undercount += cut
        return ValueCounts(merged, undercount)

    def top(self, n: int) -> tuple[tuple[str, int], ...]:
        """The ``n`` most frequent values, most frequent first, ties by value."""
        ranked = sorted(self.counts.items(), key=lambda pair: (-pair[1], pair[0]))
        return tuple(ranked[:n])

    def to_json(self) -> dict[str, object]:
        return {"counts": self.counts, "undercount": self.undercount}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ValueCounts:
        counts = data["counts"]
        assert isinstance(counts, dict)
        undercount = data.get("undercount", 0)
        assert isinstance(undercount, int)
        return cls({str(k): int(v) for k, v in counts.items()}, undercount)
