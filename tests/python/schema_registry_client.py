"""Confluent's own Python client against tributary's schema registry.

Usage: schema_registry_client.py <registry url> <subject prefix>
Prints one JSON object with what the client saw; exits non-zero on any client error.
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

V1 = {
    "type": "record",
    "name": "Value",
    "namespace": "py.public.orders",
    "fields": [{"name": "id", "type": "int"}],
}
V2 = dict(V1, fields=V1["fields"] + [{"name": "note", "type": ["null", "string"], "default": None}])
INCOMPATIBLE = dict(V1, fields=V1["fields"] + [{"name": "qty", "type": "long"}])


def main():
    url, prefix = sys.argv[1], sys.argv[2]
    subject = f"{prefix}-value"
    topic = prefix
    client = SchemaRegistryClient({"url": url})
    seen = {}

    seen["id_v1"] = client.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    seen["id_v1_again"] = client.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    seen["schema_by_id"] = json.loads(client.get_schema(seen["id_v1"]).schema_str)
    found = client.lookup_schema(subject, Schema(json.dumps(V1), "AVRO"))
    seen["lookup"] = {"id": found.schema_id, "version": found.version, "subject": found.subject}
    seen["compatible_v2"] = client.test_compatibility(subject, Schema(json.dumps(V2), "AVRO"))
    seen["compatible_incompatible"] = client.test_compatibility(
        subject, Schema(json.dumps(INCOMPATIBLE), "AVRO")
    )
    try:
        client.register_schema(subject, Schema(json.dumps(INCOMPATIBLE), "AVRO"))
        seen["incompatible_error"] = None
    except SchemaRegistryError as err:
        seen["incompatible_error"] = {"status": err.http_status_code, "code": err.error_code}
    seen["id_v2"] = client.register_schema(subject, Schema(json.dumps(V2), "AVRO"))
    latest = client.get_latest_version(subject)
    seen["latest"] = {"id": latest.schema_id, "version": latest.version}
    seen["versions"] = client.get_versions(subject)
    seen["subjects"] = [s for s in client.get_subjects() if s.startswith(prefix)]
    seen["global_level"] = client.get_compatibility()
    client.set_compatibility(subject, "FULL")
    seen["subject_level"] = client.get_compatibility(subject)
    try:
        client.get_version(subject, 99)
        seen["missing_version"] = None
    except SchemaRegistryError as err:
        seen["missing_version"] = {"status": err.http_status_code, "code": err.error_code}

    # Serialise with the latest registered schema (auto-registration off: it must be found) and
    # read back through the registry by the id in the message.
    serializer = AvroSerializer(
        client,
        json.dumps(V2),
        conf={"auto.register.schemas": False, "use.latest.version": True},
    )
    deserializer = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    payload = serializer({"id": 7, "note": "hello"}, context)
    seen["wire_magic"] = payload[0]
    seen["wire_id"] = int.from_bytes(payload[1:5], "big")
    seen["decoded"] = deserializer(payload, context)

    seen["deleted_versions"] = client.delete_subject(subject)
    seen["deleted_permanently"] = client.delete_subject(subject, permanent=True)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
