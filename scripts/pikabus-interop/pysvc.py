"""A Python PikaBus 2 service for scripts/pikabus-interop.sh.

It uses PikaBus's public API only (PikaBusSetup, the bus handed to handlers,
PikaErrorHandler); PikaBus itself is imported from PIKABUS_DIR, never copied
here. Every message it handles is appended as one JSON line to PY_LOG: its
payload, its headers with their Python types, its AMQP properties, and the
times PikaBus parses from it. The payload's "action" says what to do besides:

  echo       Reply({"echo": payload}) (messageType=payload["replyType"] if given)
  send       Send(payload["body"], queue=payload["queue"], messageType=...)
  defer      Defer(payload["body"], timedelta(seconds=payload["seconds"]), queue=..., messageType=...)
  publish    Publish(payload["body"], payload["topic"], messageType=...)
  fail       raise, until a "heal" for this payload["key"] arrived
  heal       let payload["key"] succeed from now on
  peekerror  get up to payload["max"] messages from the error queue, log them, put them back
"""
import asyncio
import datetime
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.environ["PIKABUS_DIR"])

from PikaBus.PikaBusSetup import PikaBusSetup  # noqa: E402
from PikaBus.PikaErrorHandler import PikaErrorHandler  # noqa: E402
from PikaBus.PikaProperties import PikaProperties  # noqa: E402

QUEUE = os.environ.get("PY_QUEUE", "py.interop")
LOG = os.environ["PY_LOG"]
healed = set()
props = PikaProperties()


def typed(value):
    """A header value and its Python type, as aio-pika decoded it."""
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


def record(kind, message, headers, payload, extra=None):
    entry = {
        "kind": kind,
        "received": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "payload": payload,
        "headers": {k: typed(v) for k, v in headers.items()},
        "properties": {
            "message_id": message.message_id,
            "correlation_id": message.correlation_id,
            "reply_to": message.reply_to,
            "type": message.type,
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "delivery_mode": int(message.delivery_mode) if message.delivery_mode is not None else None,
            "timestamp": message.timestamp.isoformat() if message.timestamp else None,
            "redelivered": message.redelivered,
            "routing_key": message.routing_key,
            "exchange": message.exchange,
        },
        "parsed": {
            "TimeSent": parse_time(headers, props.timeSentHeaderKey),
            "DeferredTime": parse_time(headers, props.deferredTimeHeaderKey),
            "ErrorRetries": int(headers[props.errorRetriesHeaderKey]) if props.errorRetriesHeaderKey in headers else None,
        },
    }
    if extra:
        entry.update(extra)
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


async def handler(data, bus, payload, **kwargs):
    incoming = data["incomingMessage"]
    message, headers = incoming["message"], incoming["headers"]
    action = payload.get("action") if isinstance(payload, dict) else None
    record("handled", message, headers, payload)
    mtype = payload.get("messageType") if isinstance(payload, dict) else None
    if action == "echo":
        await bus.Reply({"echo": payload}, messageType=payload.get("replyType"))
    elif action == "send":
        await bus.Send(payload["body"], queue=payload["queue"], messageType=mtype)
    elif action == "defer":
        await bus.Defer(payload["body"], datetime.timedelta(seconds=payload["seconds"]),
                        queue=payload["queue"], messageType=mtype)
    elif action == "publish":
        await bus.Publish(payload["body"], payload["topic"], messageType=mtype)
    elif action == "heal":
        healed.add(payload["key"])
    elif action == "fail":
        if payload["key"] not in healed:
            raise RuntimeError("python handler failure for " + payload["key"])
    elif action == "peekerror":
        got = 0
        queue = await bus.channel.get_queue("error", ensure=False)
        held = []
        while got < payload.get("max", 10):
            m = await queue.get(no_ack=False, fail=False)
            if m is None:
                break
            got += 1
            held.append(m)
            body = m.body.decode("utf-8", "replace")
            record("error-queue", m, dict(m.headers or {}), body)
        for m in held:
            await m.nack(requeue=True)


async def main():
    logging.basicConfig(level=os.environ.get("PY_LOGLEVEL", "WARNING"), stream=sys.stderr)
    setup = PikaBusSetup(
        os.environ["AMQP_URL"],
        defaultListenerQueue=QUEUE,
        defaultSubscriptions=os.environ.get("PY_SUBSCRIPTIONS", "interop.go.#").split(","),
        # Quick retries for the test: PikaBus's own policy (retry * delay * backoff seconds).
        pikaErrorHandler=PikaErrorHandler(maxRetries=int(os.environ.get("PY_MAX_RETRIES", "2")),
                                          delay=1, backoff=1),
        stopConsumersAtExit=False,
    )
    setup.AddMessageHandler(handler)
    await setup.StartConsumers()
    print("pysvc: consuming " + QUEUE, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await setup.Close()


if __name__ == "__main__":
    asyncio.run(main())
