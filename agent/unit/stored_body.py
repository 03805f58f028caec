"""How the buffer stores a reading's JSON: deflated against a dictionary of typical readings.

A reading's JSON is ~550 bytes, most of it key names and values every reading repeats; on
its own, deflate saves little of that, but primed with a dictionary holding one reading of
each kind it keeps ~80 bytes.  Eight readings then share a 1 KiB page of the buffer instead
of one each: the card gets a third of the pages written per reading, and a buffer of a given
size holds about seven times the readings (see docs/buffer.md).

The stored value is a BLOB: the format byte ``0x01``, then a raw deflate stream (RFC 1951,
no zlib header) of the UTF-8 JSON, compressed with :data:`DICTIONARY_V1` as preset
dictionary.  The dictionary of a format never changes once released: a new one is a new
format byte.  Bodies written as TEXT (the JSON itself, by older versions) stay readable.
"""
from __future__ import annotations

import zlib

FORMAT_V1 = 1
MAX_BODY_BYTES = 1 << 20  # no reading comes near; a damaged value must not inflate without end

# Readings of each kind, the commonest last (deflate reaches the end of its dictionary most
# cheaply).  Frozen: changing one byte makes every body stored with it unreadable.
DICTIONARY_V1 = (
    '{"schema":"blankspot.reading/1","device":"unit-1","seq":1,"time":"2026-11-24T03:04:05.678Z",'
    '"time_source":"ntp","kind":"event","position":null,"event":{"type":"tag","message":"kantor desa",'
    '"data":{"button":"short"}}}'
    '{"schema":"blankspot.reading/1","device":"unit-1","seq":1,"time":"2026-11-24T03:04:05.678Z",'
    '"time_source":"unsynced","kind":"throughput","position":null,"throughput":{"backend":"http",'
    '"server":"collector.example","down_mbps":4.2,"up_mbps":null,"bytes_used":2000000,"duration_s":3.8,'
    '"error":null}}'
    '{"schema":"blankspot.reading/1","device":"unit-1","seq":1,"time":"2026-11-24T03:04:05.678Z",'
    '"time_source":"ntp","kind":"latency","position":null,"latency":{"target":"8.8.8.8","method":"icmp",'
    '"sent":5,"received":4,"loss_pct":20.0,"rtt_min_ms":48.1,"rtt_avg_ms":55.0,"rtt_max_ms":71.9,'
    '"jitter_ms":6.2,"error":null}}'
    '{"schema":"blankspot.reading/1","device":"unit-1","seq":1,"time":"2026-11-24T03:04:05.678Z",'
    '"time_source":"gps","kind":"signal","position":{"lat":-0.503,"lon":117.146,"alt_m":12.0,"hdop":0.9,'
    '"sats":9,"speed_kmh":14.5,"course_deg":281.0,"fix":"3d"},"signal":{"registration":"searching",'
    '"operator":null,"mcc":null,"mnc":null,"rat":"NONE","band":null,"earfcn":null,"pci":null,"cell_id":null,'
    '"tac":null,"lac":null,"rssi_dbm":null,"rsrp_dbm":null,"rsrq_db":null,"sinr_db":null,"rscp_dbm":null,'
    '"ecio_db":null,"csq":null,"quality":"none","error":null}}'
    '{"schema":"blankspot.reading/1","device":"unit-1","seq":1,"time":"2026-11-24T03:04:05.678Z",'
    '"time_source":"gps","kind":"signal","position":{"lat":-0.503,"lon":117.146,"alt_m":12.0,"hdop":0.9,'
    '"sats":9,"speed_kmh":14.5,"course_deg":281.0,"fix":"3d"},"signal":{"registration":"home",'
    '"operator":"TELKOMSEL","mcc":510,"mnc":10,"rat":"LTE","band":3,"earfcn":1850,"pci":101,'
    '"cell_id":27439873,"tac":11009,"lac":11009,"rssi_dbm":-71.0,"rsrp_dbm":-99.0,"rsrq_db":-11.0,'
    '"sinr_db":7.5,"rscp_dbm":null,"ecio_db":null,"csq":null,"quality":"fair","error":null}}'
).encode()


class StoredBodyError(ValueError):
    """A stored body that cannot be read back (an unknown format, a damaged value)."""


def pack_body(text: str) -> bytes:
    """The stored form of a reading's JSON ``text``."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=DICTIONARY_V1)
    return bytes([FORMAT_V1]) + packer.compress(text.encode()) + packer.flush()


def unpack_body(value: str | bytes) -> str:
    """The JSON a stored body holds; raises :class:`StoredBodyError` only."""
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes) or not value:
        raise StoredBodyError(f"a stored body is a BLOB or TEXT, not {type(value).__name__} {value!r:.40}")
    if value[0] != FORMAT_V1:
        raise StoredBodyError(f"unknown stored body format {value[0]} (this version reads {FORMAT_V1})")
    unpacker = zlib.decompressobj(-15, zdict=DICTIONARY_V1)
    try:
        data = unpacker.decompress(value[1:], MAX_BODY_BYTES)
    except zlib.error as exc:
        raise StoredBodyError(f"stored body damaged: {exc}") from None
    if unpacker.unconsumed_tail or unpacker.unused_data or not unpacker.eof:
        raise StoredBodyError("stored body damaged: truncated, too long, or larger than any reading")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise StoredBodyError(f"stored body damaged: not UTF-8 ({exc})") from None
