"""Reads a topic written with the Avro converter through Confluent's client and deserializer
(schemas fetched from the registry by the id in each record) and a topic of the same table
written with the JSON converter (schemas.enable=false), and compares them record by record.

Usage: avro_matches_json.py <bootstrap servers> <registry url> <json topic> <avro topic> <count>
Prints one JSON object: how many records were compared, the mismatches, the value schema ids
seen in the Avro records and the decoded `after` images; exits non-zero on a client error.
"""

import base64
import json
import math
import struct
import sys
from decimal import Decimal

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def read(bootstrap, topic, count):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"avro-check-{topic}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    records = []
    while len(records) < count:
        message = consumer.poll(30)
        if message is None:
            raise SystemExit(f"{topic}: only {len(records)} of {count} records arrived")
        if message.error():
            raise SystemExit(f"{topic}: {message.error()}")
        # Tombstones (null values) follow deletes in both topics; they carry no schema.
        if message.value() is not None:
            records.append(message)
    consumer.close()
    return records


def same(avro, js):
    """Whether a decoded Avro value is what the JSON converter wrote for it."""
    if isinstance(avro, Decimal):
        if not isinstance(js, str):
            return False
        unscaled = int.from_bytes(base64.b64decode(js), "big", signed=True)
        return unscaled == int(avro.scaleb(-avro.as_tuple().exponent))
    if isinstance(avro, bytes):
        return js == base64.b64encode(avro).decode()
    if isinstance(avro, float):
        if isinstance(js, str):
            return {"NaN": math.isnan(avro), "Infinity": avro == math.inf, "-Infinity": avro == -math.inf}.get(js, False)
        if not isinstance(js, (int, float)):
            return False
        # float4 columns travel as Avro floats: compare at single precision.
        return avro == js or struct.pack(">f", avro) == struct.pack(">f", js)
    if isinstance(avro, bool) or isinstance(js, bool):
        return avro is js
    if isinstance(avro, dict):
        return isinstance(js, dict) and avro.keys() == js.keys() and all(same(avro[k], js[k]) for k in avro)
    if isinstance(avro, list):
        return isinstance(js, list) and len(avro) == len(js) and all(same(a, j) for a, j in zip(avro, js))
    return type(avro) in (int, str, type(None)) and avro == js


def printable(value):
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def main():
    bootstrap, url, json_topic, avro_topic, count = sys.argv[1:6]
    count = int(count)
    registry = SchemaRegistryClient({"url": url})
    values = AvroDeserializer(registry)
    keys = AvroDeserializer(registry)
    json_records = read(bootstrap, json_topic, count)
    avro_records = read(bootstrap, avro_topic, count)
    report = {"compared": 0, "mismatches": [], "value_schema_ids": [], "after": [], "ops": []}
    for js_record, avro_record in zip(json_records, avro_records):
        raw = avro_record.value()
        report["value_schema_ids"].append(int.from_bytes(raw[1:5], "big") if raw[0] == 0 else None)
        value = values(raw, SerializationContext(avro_topic, MessageField.VALUE))
        key = keys(avro_record.key(), SerializationContext(avro_topic, MessageField.KEY))
        js_value = json.loads(js_record.value())
        js_key = json.loads(js_record.key())
        report["after"].append(printable(value["after"]))
        report["ops"].append(value["op"])
        if not same(key, js_key):
            report["mismatches"].append({"key": printable(key), "json": js_key})
        for field in ("op", "before", "after"):
            if not same(value[field], js_value[field]):
                if isinstance(value[field], dict) and isinstance(js_value[field], dict):
                    for column in sorted(set(value[field]) | set(js_value[field])):
                        a, j = value[field].get(column), js_value[field].get(column)
                        if not same(a, j):
                            report["mismatches"].append({"field": f"{field}.{column}", "avro": printable(a), "json": j})
                else:
                    report["mismatches"].append({"field": field, "avro": printable(value[field]), "json": js_value[field]})
        # Both connectors read the same transactions: the same position, table and transaction.
        # A snapshot's position is its own slot's consistent point: it differs between the two.
        fields = ("connector", "db", "schema", "table", "txId", "snapshot")
        if value["op"] != "r":
            fields += ("lsn",)
        for field in fields:
            if not same(value["source"][field], js_value["source"][field]):
                report["mismatches"].append({"field": f"source.{field}", "avro": printable(value["source"][field]), "json": js_value["source"][field]})
        report["compared"] += 1
    print(json.dumps(report))


if __name__ == "__main__":
    main()
