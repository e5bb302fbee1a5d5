"""A tomodachi service for scripts/tomodachi-interop.sh: it talks with the Go
side (busline) on amq.topic in tomodachi's two envelopes, and logs what it
receives as JSON lines on stdout. Written against tomodachi's public API
(0.28): run with `python3 -m tomodachi run svc.py` and PYTHONPATH holding a
tomodachi checkout and ORDERS_PB_DIR the generated orders_pb2.py.
"""

import json
import os
import sys

sys.path.insert(0, os.environ["ORDERS_PB_DIR"])

import orders_pb2  # noqa: E402  (protoc --python_out of protocodec/orderspb/orders.proto)
import tomodachi  # noqa: E402
from tomodachi.envelope import JsonBase, ProtobufBase  # noqa: E402

PREFIX = os.environ["INTEROP_PREFIX"]  # one per run: options.amqp.routing_key_prefix


def log(**kw):
    print(json.dumps(kw, sort_keys=True), flush=True)


class Service(tomodachi.Service):
    name = "tomodachi-interop"
    message_envelope = JsonBase
    options = tomodachi.Options(
        amqp=tomodachi.Options.AMQP(
            host=os.environ.get("AMQP_HOST", "127.0.0.1"),
            port=int(os.environ["AMQP_PORT"]),
            routing_key_prefix=PREFIX,
            queue_name_prefix=PREFIX,
        )
    )

    # JSON, competing (one queue for every instance of the service).
    @tomodachi.amqp("order.created", competing=True)
    async def on_order_created(self, data, message_uuid, routing_key):
        log(event="json", routing_key=routing_key, data=data, message_uuid=message_uuid)
        await tomodachi.amqp_publish(self, {"order_id": data["order_id"], "reserved": True}, routing_key="stock.reserved")

    # Protobuf, non-competing (a queue for this instance).
    @tomodachi.amqp("order.placed", competing=False, message_envelope=ProtobufBase, proto_class=orders_pb2.OrderPlaced)
    async def on_order_placed(self, data, routing_key):
        log(event="proto", routing_key=routing_key, order_id=data.order_id, total_cents=data.total_cents, skus=list(data.skus))
        reply = orders_pb2.StockReserved(order_id=data.order_id, complete=True)
        await tomodachi.amqp_publish(self, reply, routing_key="stock.proto", message_envelope=ProtobufBase)

    async def _started_service(self):
        await tomodachi.amqp_publish(self, {"order_id": "py-1", "from": "tomodachi"}, routing_key="hello")
        log(event="started", uuid=self.uuid)
