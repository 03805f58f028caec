"""``blankspot tail``: the units' feed as JSON lines, whatever encoding their batches are in.

A unit sends its batches compressed by default; ``mosquitto_sub`` shows those as bytes.
``tail`` subscribes like any MQTT client (not in the collectors' shared group, so it takes
nothing from them) and prints every reading of every batch as one line of its JSON form,
``blankspot.reading/2`` (a reading a unit sent as ``/1`` printed as it is read, codes as
digits); ``--file`` reads one saved payload instead.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.commands.common import add_broker_options, broker_of
from agent.commands.exit_status import RuntimeFailure, UsageError


def add_tail(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tail", help="print the units' readings from the broker as JSON lines (any batch encoding)",
        description="Subscribe to the units' readings and print each reading as one JSON line "
                    "(blankspot.reading/2), from compact and JSON batches alike; or decode one saved "
                    "payload with --file. Runs until interrupted, or until --count batches. "
                    "Example: blankspot tail --broker mqtt://127.0.0.1:1883 | jq -c '{device, seq, kind}'",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="PATH", help="one batch payload saved to a file (- for standard input)")
    add_broker_options(p, broker_into=source)
    p.add_argument("--device", default="+", metavar="ID", help="only this unit (default every unit)")
    p.add_argument("--status", action="store_true", help="also print the units' status messages")
    p.add_argument("--count", type=int, metavar="N", help="stop after N batches")
    p.set_defaults(func=cmd_tail)


def cmd_tail(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("blankspot tail: --count: expected 1 or more")
    if args.file is not None:
        return _decode_file(args.file)
    return _follow(args)


def _decode_file(name: str) -> int:
    from agent.shared.protocol import PayloadError, decode_batch

    try:
        payload = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"blankspot tail: cannot read {name}: {exc.strerror or exc}") from None
    try:
        readings = decode_batch(payload)
    except PayloadError as exc:
        raise UsageError(f"blankspot tail: {name}: not a batch: {exc}") from None
    for reading in readings:
        print(reading.to_json())
    return 0


def _follow(args: argparse.Namespace) -> int:
    from paho.mqtt.enums import MQTTErrorCode

    from agent.shared.mqtt import new_client, secure
    from agent.shared.protocol import PayloadError, decode_batch, decode_status, split_topic
    from agent.shared.reading import DEVICE_RE

    if args.device != "+" and not DEVICE_RE.fullmatch(args.device):
        raise UsageError(f"blankspot tail: --device: {args.device!r} is not a device id")
    broker, password = broker_of(args, "tail")
    topics = [f"{args.prefix}/{args.device}/readings"] + ([f"{args.prefix}/{args.device}/status"] if args.status else [])
    stop = threading.Event()
    failure: list[str] = []
    batches = 0

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            failure.append(f"broker {broker} refused the connection: {reason_code}")
            stop.set()
            return
        client.subscribe([(topic, 1) for topic in topics])

    def on_subscribe(client: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        refused = [topic for topic, code in zip(topics, reason_codes) if code.is_failure]
        if refused:
            failure.append(f"broker {broker} refused the subscription to {', '.join(refused)} (its ACL?)")
            stop.set()
            return
        print(f"blankspot tail: reading {', '.join(topics)} from {broker}", file=sys.stderr, flush=True)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        nonlocal batches
        payload = bytes(message.payload)
        try:
            device, what = split_topic(args.prefix, message.topic)
            if what == "status":
                status = decode_status(payload, device)
                print(json.dumps(status, separators=(",", ":"), ensure_ascii=False), flush=True)
                return
            content_type = getattr(message.properties, "ContentType", None)
            lines = [r.to_json() for r in decode_batch(payload, device, content_type)]
        except (PayloadError, UnicodeDecodeError, RecursionError) as exc:
            print(f"blankspot tail: {message.topic}: refused: {exc}", file=sys.stderr, flush=True)
            return
        print("\n".join(lines), flush=True)
        batches += 1
        if args.count is not None and batches >= args.count:
            stop.set()

    client = new_client(f"blankspot-tail-{os.getpid()}", persistent=False)
    try:
        secure(client, username=args.username, password=password, tls=broker.tls, ca_file=args.tls_ca,
               cert_file=args.tls_cert, key_file=args.tls_key)
    except (OSError, ValueError) as exc:
        raise UsageError(f"blankspot tail: TLS files: {exc}") from None
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        client.connect(broker.host, broker.port, keepalive=60)
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"tail: cannot reach broker {broker}: {exc}") from None
    while not stop.is_set():
        rc = client.loop(timeout=1.0)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not stop.is_set():
            raise RuntimeFailure(f"tail: connection to {broker} lost ({rc.name})")
    client.disconnect()
    if failure:
        raise RuntimeFailure(f"tail: {failure[0]}")
    return 0
