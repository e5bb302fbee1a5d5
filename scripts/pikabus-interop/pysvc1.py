"""A Python PikaBus 1.x service for scripts/pikabus-interop.sh (PIKABUS_LINE=1).

The twin of pysvc.py for PikaBus's last 1.x release line (pika, synchronous),
written against that line's public API (PikaBusSetup, the bus and the data
handed to handlers as keyword arguments, PikaErrorHandler) as of commit
9153c00 (2022-09-09); PikaBus itself is imported from PIKABUS_DIR, a checkout
of that commit, never copied here. It logs what it handles to PY_LOG in
pysvc.py's format and takes the same actions (see pysvc.py). Times are
parsed with PikaBus 1.x's own PikaProperties.StringToDatetime, which is
strptime of '%m/%d/%Y %H:%M:%S'.
"""
import datetime
import json
import logging
import os
import signal
import sys
import threading

sys.path.insert(0, os.environ["PIKABUS_DIR"])

import pika  # noqa: E402
from PikaBus.PikaBusSetup import PikaBusSetup  # noqa: E402
from PikaBus.PikaErrorHandler import PikaErrorHandler  # noqa: E402
from PikaBus.PikaProperties import PikaProperties  # noqa: E402

QUEUE = os.environ.get("PY_QUEUE", "py.interop")
LOG = os.environ["PY_LOG"]
healed = set()
props = PikaProperties()
log_lock = threading.Lock()


def typed(value):
    """A header value and its Python type, as pika decoded it."""
    if isinstance(value, bytes):
        return {"type": "bytes", "value": value.decode("utf-8", "replace")}
    if isinstance(value, (datetime.datetime, datetime.date)):
        return {"type": type(value).__name__, "value": value.isoformat()}
    if isinstance(value, dict):
        return {"type": "dict", "value": {k: typed(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"type": "list", "value": [typed(v) for v in value]}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return {"type": type(value).__name__, "value": value}
    return {"type": type(value).__name__, "value": repr(value)}


def parse_time(headers, key):
    if key not in headers:
        return None
    try:
        return props.StringToDatetime(str(headers[key])).isoformat()
    except Exception as e:  # recorded, not raised: the record says what failed
        return "ERROR: " + str(e)


def record(kind, method, properties, payload, extra=None):
    headers = dict(properties.headers or {})
    ts = properties.timestamp
    entry = {
        "kind": kind,
        "received": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "payload": payload,
        "headers": {k: typed(v) for k, v in headers.items()},
        "properties": {
            "message_id": properties.message_id,
            "correlation_id": properties.correlation_id,
            "reply_to": properties.reply_to,
            "type": properties.type,
            "content_type": properties.content_type,
            "content_encoding": properties.content_encoding,
            "delivery_mode": properties.delivery_mode,
            "timestamp": datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat() if ts else None,
            "redelivered": getattr(method, "redelivered", None),
            "routing_key": getattr(method, "routing_key", None),
            "exchange": getattr(method, "exchange", None),
        },
        "parsed": {
            "TimeSent": parse_time(headers, props.timeSentHeaderKey),
            "DeferredTime": parse_time(headers, props.deferredTimeHeaderKey),
            "ErrorRetries": int(headers[props.errorRetriesHeaderKey]) if props.errorRetriesHeaderKey in headers else None,
        },
    }
    if extra:
        entry.update(extra)
    with log_lock, open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


def handler(**kwargs):
    data, bus, payload = kwargs["data"], kwargs["bus"], kwargs["payload"]
    incoming = data["incomingMessage"]
    method, properties = incoming["methodFrame"], incoming["headerFrame"]
    action = payload.get("action") if isinstance(payload, dict) else None
    record("handled", method, properties, payload)
    mtype = payload.get("messageType") if isinstance(payload, dict) else None
    if action == "echo":
        bus.Reply(payload={"echo": payload}, messageType=payload.get("replyType"))
    elif action == "send":
        bus.Send(payload=payload["body"], queue=payload["queue"], messageType=mtype)
    elif action == "defer":
        bus.Defer(payload=payload["body"], delay=datetime.timedelta(seconds=payload["seconds"]),
                  queue=payload["queue"], messageType=mtype)
    elif action == "publish":
        bus.Publish(payload=payload["body"], topic=payload["topic"], messageType=mtype)
    elif action == "heal":
        healed.add(payload["key"])
    elif action == "fail":
        if payload["key"] not in healed:
            raise RuntimeError("python handler failure for " + payload["key"])
    elif action == "peekerror":
        channel = bus.channel
        held = []
        while len(held) < payload.get("max", 10):
            m, p, body = channel.basic_get("error", auto_ack=False)
            if m is None:
                break
            held.append(m)
            record("error-queue", m, p, body.decode("utf-8", "replace"))
        for m in held:
            channel.basic_nack(m.delivery_tag, requeue=True)


def main():
    logging.basicConfig(level=os.environ.get("PY_LOGLEVEL", "WARNING"), stream=sys.stderr)
    setup = PikaBusSetup(
        pika.URLParameters(os.environ["AMQP_URL"]),
        defaultListenerQueue=QUEUE,
        defaultSubscriptions=os.environ.get("PY_SUBSCRIPTIONS", "interop.go.#").split(","),
        # Quick retries for the check: PikaBus's own policy (retry * delay * backoff seconds).
        pikaErrorHandler=PikaErrorHandler(maxRetries=int(os.environ.get("PY_MAX_RETRIES", "2")),
                                          delay=1, backoff=1),
    )
    setup.AddMessageHandler(handler)
    setup.StartConsumers()
    print("pysvc1: consuming " + QUEUE, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    setup.StopConsumers()


if __name__ == "__main__":
    main()
