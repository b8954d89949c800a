"""Parse quantities the way people write them in cluster specs.

Bandwidth is the trap: network gear is quoted in bits ("10Gb/s"), memory
buses in bytes ("300GB/s"). The letter case of the ``b`` decides, as in
every datasheet, so we never guess. Everything is returned in SI base
units: bytes per second, seconds, bytes, counts.
"""

from __future__ import annotations

import re

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_IEC = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
_TIME = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}

_NUM = r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_BW_RE = re.compile(_NUM + r"(?P<prefix>Ki|Mi|Gi|Ti|[kKMGTP]?)(?P<unit>b|B|bit|bps|Bps)(?:/s)?$")
_SIZE_RE = re.compile(_NUM + r"(?P<prefix>Ki|Mi|Gi|Ti|[kKMGTP]?)(?P<unit>B|b)?$")
_TIME_RE = re.compile(_NUM + r"(?P<unit>ns|us|µs|ms|s|min|h)?$", re.IGNORECASE)
# What a mistyped case still looks like: "100gb/s", "4mb", "2gbps" (a hint, never a guess).
_ANY_CASE_RE = re.compile(
    _NUM + r"(?P<prefix>ki|mi|gi|ti|[kmgtp]?)(?P<unit>b|bit|bps)?(?P<rate>/s)?$", re.IGNORECASE
)


class UnitError(ValueError):
    """A quantity that does not parse; the message says what was expected."""


def _scale(prefix: str) -> float:
    return _IEC[prefix] if prefix in _IEC else _SI[prefix]


def _prefix(text: str) -> str:
    """A prefix as datasheets write it: "g" → "G", "ki" → "Ki" (k stays k)."""
    if text.lower() == "k":
        return "k"
    return text[0].upper() + text[1:].lower() if text else ""


def _case_hint(value: str, kind: str) -> str:
    """A hint for a quantity whose letters are right but whose case is not.

    The case of ``b`` is the whole difference between bits and bytes, so a
    lowercase spelling is never accepted: the hint names both readings."""
    m = _ANY_CASE_RE.match(value.strip())
    if not m or not (m["prefix"] or m["unit"]):
        return ""
    num, pre = m["num"], _prefix(m["prefix"])
    if kind == "bandwidth":
        bits, nbytes = f"{num}{pre}b/s", f"{num}{pre}B/s"
        return f"; units are case-sensitive: write '{bits}' (bits) or '{nbytes}' (bytes)"
    if kind == "size":
        return f"; sizes are bytes, units case-sensitive: write '{num}{pre}B'"
    if m["unit"] and m["unit"].lower() == "b":
        if not pre:  # "1.3B": billions, as papers write it
            return f"; B means bytes, not billions: write '{num}G' or {num}e9 for a count"
        return f"; B means bytes, but this is a count: write '{num}{pre}'"
    if pre != m["prefix"] and not m["unit"]:
        return f"; prefixes are case-sensitive: write '{num}{pre}'"
    return ""


def parse_bandwidth(value: str | float | int) -> float:
    """Bytes per second from "10Gb/s" (bits) or "300GB/s" (bytes); bare numbers are bytes/s."""
    if isinstance(value, bool):
        raise UnitError("expected a bandwidth such as '10Gb/s' or '300GB/s'")
    if isinstance(value, int | float):
        return float(value)
    m = _BW_RE.match(value.strip())
    if not m:
        raise UnitError(
            f"expected a bandwidth such as '10Gb/s' or '300GB/s', got {value!r}"
            + _case_hint(value, "bandwidth")
        )
    bits = m["unit"] in ("b", "bit", "bps")
    return float(m["num"]) * _scale(m["prefix"]) / (8.0 if bits else 1.0)


def parse_time(value: str | float | int) -> float:
    """Seconds from "50ms", "2us", "1.5s"; bare numbers are seconds."""
    if isinstance(value, bool):
        raise UnitError("expected a duration such as '50ms' or '2us'")
    if isinstance(value, int | float):
        return float(value)
    m = _TIME_RE.match(value.strip())
    if not m:
        raise UnitError(f"expected a duration such as '50ms' or '2us', got {value!r}")
    return float(m["num"]) * _TIME[(m["unit"] or "s").lower()]  # "50MS" is 50 ms: no megaseconds


def parse_count(value: str | float | int) -> int:
    """A count such as a parameter number: "25.6M" is 25,600,000; "1.3G" and "1.3e9" are
    1.3 billion. "1.3B" is refused: in this file B is bytes, never billions."""
    if isinstance(value, bool):
        raise UnitError("expected a count such as '25.6M'")
    if isinstance(value, int | float):
        return round(value)
    m = _SIZE_RE.match(value.strip())
    if not m or m["unit"]:
        raise UnitError(
            f"expected a count such as '25.6M', '1.3G' or 1.3e9, got {value!r}"
            + _case_hint(value, "count")
        )
    return round(float(m["num"]) * _scale(m["prefix"]))


def parse_size(value: str | float | int) -> int:
    """Bytes from "4MB", "1MiB", "512KiB"; bare numbers are bytes."""
    if isinstance(value, bool):
        raise UnitError("expected a size such as '4MB'")
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE_RE.match(value.strip())
    if not m or m["unit"] == "b":
        raise UnitError(
            f"expected a size in bytes such as '4MB' or '1MiB', got {value!r}"
            + _case_hint(value, "size")
        )
    return round(float(m["num"]) * _scale(m["prefix"]))


def fmt_time(seconds: float) -> str:
    """Human-readable duration with three significant figures."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds} s"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"
