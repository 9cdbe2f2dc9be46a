"""A stock Confluent client (confluent-kafka-python) producing into storeflow and reading
one of its outputs, as an integrator would (docs/PRODUCING.md).

Produces one StockReceived to storefront.inventory with AvroSerializer — the subject from
topic_record_subject_name_strategy, the id looked up in the registry `storeflow run`
serves (auto.register.schemas false, use.latest.version false) — and librdkafka's
murmur2_random partitioner (Java's default placement). Then reads inventory.levels with
AvroDeserializer until storeflow's StockLevelChanged for that sku appears.

Prints one JSON line: {"produced": {"topic", "partition", "offset", "schema_id", "subject"},
"consumed": {"partition", "offset", "schema_id", "value"}}. Exits 1 (with the reason on
stderr) when nothing arrives within --timeout seconds.

    python tests/clients/confluent_roundtrip.py --bootstrap 127.0.0.1:19092 \
        --registry http://127.0.0.1:8081 --sku sku-1 --warehouse wh-de-berlin --quantity 7
"""

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMAS = Path(__file__).resolve().parents[2] / "avro" / "schemas"
INPUT = "storefront.inventory"
OUTPUT = "inventory.levels"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True, help="the registry storeflow run serves")
    p.add_argument("--basic-auth", help="user:password for the registry")
    p.add_argument("--sku", required=True)
    p.add_argument("--warehouse", required=True)
    p.add_argument("--quantity", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()

    registry_conf = {"url": a.registry}
    if a.basic_auth:
        registry_conf["basic.auth.user.info"] = a.basic_auth
    registry = SchemaRegistryClient(registry_conf)

    serializer = AvroSerializer(
        registry,
        (SCHEMAS / "StockReceived.avsc").read_text(),
        conf={
            "auto.register.schemas": False,
            "use.latest.version": False,
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    producer = Producer({"bootstrap.servers": a.bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True})
    event = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": int(time.time() * 1000),
        "sku": a.sku,
        "warehouse_id": a.warehouse,
        "quantity": a.quantity,
        "reference": "asn-stock-client",
    }
    value = serializer(event, SerializationContext(INPUT, MessageField.VALUE))
    delivered = {}

    def on_delivery(err, msg):
        if err is not None:
            delivered["error"] = str(err)
        else:
            delivered.update(partition=msg.partition(), offset=msg.offset())

    producer.produce(INPUT, key=a.sku.encode(), value=value, on_delivery=on_delivery)
    if producer.flush(30) != 0 or "error" in delivered or "partition" not in delivered:
        print(f"producing to {INPUT} failed: {delivered.get('error', 'not acknowledged within 30 s')}", file=sys.stderr)
        return 1
    produced = {
        "topic": INPUT,
        "partition": delivered["partition"],
        "offset": delivered["offset"],
        "schema_id": int.from_bytes(value[1:5], "big"),
        "subject": topic_record_subject_name_strategy(SerializationContext(INPUT, MessageField.VALUE), "storeflow.v1.StockReceived"),
    }

    # No reader schema: the writer schema comes from the registry by the record's id.
    deserializer = AvroDeserializer(registry)
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"stock-client-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # storeflow writes its outputs in transactions.
        "isolation.level": "read_committed",
    })
    consumer.subscribe([OUTPUT])
    deadline = time.monotonic() + a.timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer: {msg.error()}", file=sys.stderr)
                continue
            if msg.key() != a.sku.encode():
                continue
            level = deserializer(msg.value(), SerializationContext(OUTPUT, MessageField.VALUE))
            consumed = {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "schema_id": int.from_bytes(msg.value()[1:5], "big"),
                "value": level,
            }
            print(json.dumps({"produced": produced, "consumed": consumed}, default=str))
            return 0
    finally:
        consumer.close()
    print(f"no {OUTPUT} record for {a.sku} within {a.timeout} s (produced {produced})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
