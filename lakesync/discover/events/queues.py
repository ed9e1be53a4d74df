"""Receive and acknowledge a lake's event messages: SQS, Azure Storage queues, Pub/Sub, Kafka.

A queue hands out :class:`Message` values and takes them back to acknowledge (SQS and Azure:
delete; Pub/Sub: acknowledge; Kafka: commit the offsets after them). Nothing is acknowledged
before the intake has recorded what the message said, so a crash in between means a redelivery
(harmless: the ledger decides what is ingested). Secrets come from the environment variables the
configuration names and are never logged; a missing variable is an error naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from azure.storage.queue import QueueClient
from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, KafkaException, TopicPartition

from lakesync.config.discovery import AzureQueueSource, EventSource, KafkaSource, PubSubSource, SqsSource
from lakesync.config.secrets import EnvSecret
from lakesync.config.storage import AnyLake, GcsLake, S3Lake
from lakesync.discover.stores.base import LakeUnavailableError


@dataclass(frozen=True)
class Message:
    id: str
    body: str | bytes
    attributes: dict[str, str] = field(default_factory=dict)
    handle: Any = field(default=None, repr=False, compare=False)
    """What the queue needs to acknowledge it (a receipt handle, a Kafka message)."""


class EventQueue(Protocol):
    description: str

    def receive(self, limit: int, wait_seconds: float) -> list[Message]:
        """Up to ``limit`` messages (waiting at most ``wait_seconds`` when there are none)."""
        ...

    def ack(self, messages: Sequence[Message]) -> None:
        """The messages are recorded: do not deliver them again."""
        ...

    def depth(self) -> int | None:
        """Messages waiting (approximate), when the queue can say."""
        ...

    def retention_seconds(self) -> float | None:
        """How long the queue keeps a message nobody received, when it can say: an intake that
        did not run for longer may have lost events, so it reconciles at once."""
        ...

    def close(self) -> None: ...


def _secret(lake: str, secret: EnvSecret | None) -> str | None:
    if secret is None:
        return None
    value = os.environ.get(secret.env)
    if not value:
        msg = (
            f"lake {lake!r}: the event queue's secret variable ${secret.env} is not set; "
            "export it (lakesync never reads secrets from lakesync.yaml)"
        )
        raise LakeUnavailableError(msg)
    return value


class SqsQueue:
    def __init__(self, lake: str, source: SqsSource, config: AnyLake) -> None:
        s3 = config if isinstance(config, S3Lake) else None
        credentials = s3.credentials if s3 is not None else None
        key = source.access_key_id or (credentials.access_key_id if credentials else None)
        secret = source.secret_access_key or (credentials.secret_access_key if credentials else None)
        self.client = boto3.client(
            "sqs",
            region_name=source.region or (s3.region if s3 else None) or "us-east-1",
            endpoint_url=source.endpoint_url or (s3.endpoint_url if s3 else None),
            aws_access_key_id=_secret(lake, key),
            aws_secret_access_key=_secret(lake, secret),
        )
        self.url = source.queue_url
        self.description = f"SQS queue {source.queue_url}"

    def receive(self, limit: int, wait_seconds: float) -> list[Message]:
        found: list[Message] = []
        wait = round(wait_seconds)
        while len(found) < limit:
            answer = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, limit - len(found)),
                WaitTimeSeconds=wait if not found else 0,
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            found.extend(
                Message(
                    m["MessageId"],
                    m["Body"],
                    {k: str(v.get("StringValue")) for k, v in m.get("MessageAttributes", {}).items()},
                    m["ReceiptHandle"],
                )
                for m in messages
            )
        return found

    def ack(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m.handle} for n, m in enumerate(messages[start : start + 10])
            ]
            self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)

    def depth(self) -> int | None:
        answer = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])

    def retention_seconds(self) -> float | None:
        answer = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["MessageRetentionPeriod"]
        )
        return float(answer["Attributes"]["MessageRetentionPeriod"])

    def close(self) -> None:
        self.client.close()


class AzureQueue:
    def __init__(self, lake: str, source: AzureQueueSource) -> None:
        connection = _secret(lake, source.connection_string)
        assert connection is not None
        self.client = QueueClient.from_connection_string(connection, source.queue)
        self.description = f"Azure Storage queue {source.queue}"

    def receive(self, limit: int, wait_seconds: float) -> list[Message]:
        del wait_seconds  # Azure queues answer at once
        found: list[Message] = []
        for m in self.client.receive_messages(messages_per_page=32, visibility_timeout=300):
            found.append(Message(str(m.id), str(m.content), {}, m))
            if len(found) >= limit:
                break
        return found

    def ack(self, messages: Sequence[Message]) -> None:
        for m in messages:
            self.client.delete_message(m.handle)

    def depth(self) -> int | None:
        return int(self.client.get_queue_properties().approximate_message_count or 0)

    def retention_seconds(self) -> float | None:
        return 7 * 24 * 3600.0  # a Storage queue message's default time to live (Event Grid sets no other)

    def close(self) -> None:
        self.client.close()


class KafkaQueue:
    def __init__(self, lake: str, source: KafkaSource) -> None:
        settings: dict[str, Any] = {
            "bootstrap.servers": source.bootstrap_servers,
            "group.id": source.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **source.settings,
        }
        if source.username is not None:
            settings["sasl.username"] = _secret(lake, source.username)
        if source.password is not None:
            settings["sasl.password"] = _secret(lake, source.password)
        self.consumer = Consumer(settings)
        # Every partition, from the group's committed offsets: assigned, not subscribed, so an
        # intake starts at once instead of waiting for a group rebalance (duplicates between two
        # intakes at once are harmless: the ledger announces a file once).
        try:
            topic = self.consumer.list_topics(source.topic, timeout=10).topics[source.topic]
        except KafkaException as exc:
            self.consumer.close()
            msg = f"lake {lake!r}: Kafka at {source.bootstrap_servers} cannot be reached: {exc}"
            raise LakeUnavailableError(msg) from None
        if topic.error is not None and topic.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            self.consumer.close()
            msg = f"lake {lake!r}: Kafka topic {source.topic!r}: {topic.error.str()}"
            raise LakeUnavailableError(msg)
        self.partitions = [TopicPartition(source.topic, p, OFFSET_STORED) for p in topic.partitions]
        self.consumer.assign(self.partitions)
        self.description = f"Kafka topic {source.topic} ({source.bootstrap_servers})"

    def receive(self, limit: int, wait_seconds: float) -> list[Message]:
        found: list[Message] = []
        timeout = max(wait_seconds, 0.1)
        while len(found) < limit:
            polled = self.consumer.consume(num_messages=min(500, limit - len(found)), timeout=timeout)
            if not polled:
                break
            for m in polled:
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    msg = f"{self.description}: {error.str()}"
                    raise LakeUnavailableError(msg)
                found.append(Message(f"{m.topic()}/{m.partition()}/{m.offset()}", m.value() or b"", {}, m))
            timeout = 0.1
        return found

    def ack(self, messages: Sequence[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            where = (m.handle.topic(), m.handle.partition())
            last[where] = max(last.get(where, -1), m.handle.offset())
        if last:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()],
                asynchronous=False,
            )

    def depth(self) -> int | None:
        """The group's lag: messages after its committed offsets, over every partition."""
        lag = 0
        for committed in self.consumer.committed(self.partitions, timeout=10):
            low, high = self.consumer.get_watermark_offsets(committed, timeout=10, cached=False)
            start = committed.offset if committed.offset >= 0 else low
            lag += max(0, high - start)
        return lag

    def retention_seconds(self) -> float | None:
        return None  # the topic's retention.ms is the broker's setting: not read

    def close(self) -> None:
        self.consumer.close()


class PubSubQueue:
    """A Pub/Sub subscription, pulled (synchronously: a tick receives a bounded batch)."""

    def __init__(self, lake: str, source: PubSubSource, config: AnyLake) -> None:
        from google.api_core.exceptions import GoogleAPICallError  # noqa: PLC0415 - when configured
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415
        from google.oauth2 import service_account  # noqa: PLC0415

        gcs = config if isinstance(config, GcsLake) else None
        secret = source.service_account_json or (
            gcs.credentials.service_account_json if gcs is not None and gcs.credentials else None
        )
        key = _secret(lake, secret)
        credentials = None
        if key is not None and not os.environ.get("PUBSUB_EMULATOR_HOST"):
            credentials = service_account.Credentials.from_service_account_info(json.loads(key))  # type: ignore[no-untyped-call]
        self._errors: tuple[type[BaseException], ...] = (GoogleAPICallError,)
        self.client = pubsub_v1.SubscriberClient(credentials=credentials)
        self.subscription = source.subscription
        self.description = f"Pub/Sub subscription {source.subscription}"
        self._lake = lake

    def _unavailable(self, exc: BaseException) -> LakeUnavailableError:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return LakeUnavailableError(f"lake {self._lake!r}: {self.description}: {first}")

    def receive(self, limit: int, wait_seconds: float) -> list[Message]:
        found: list[Message] = []
        try:
            while len(found) < limit:
                answer = self.client.pull(
                    request={
                        "subscription": self.subscription,
                        "max_messages": min(1000, limit - len(found)),
                    },
                    timeout=max(wait_seconds, 1.0) if not found else 1.0,
                )
                if not answer.received_messages:
                    break
                found.extend(
                    Message(
                        r.message.message_id,
                        bytes(r.message.data),
                        dict(r.message.attributes),
                        r.ack_id,
                    )
                    for r in answer.received_messages
                )
        except self._errors as exc:
            if "DeadlineExceeded" in type(exc).__name__ or "504" in str(exc):
                return found  # nothing came in the wait
            raise self._unavailable(exc) from None
        return found

    def ack(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), 1000):
            ids = [m.handle for m in messages[start : start + 1000]]
            try:
                self.client.acknowledge(request={"subscription": self.subscription, "ack_ids": ids})
            except self._errors as exc:
                raise self._unavailable(exc) from None

    def depth(self) -> int | None:
        return None  # Pub/Sub tells a backlog through Cloud Monitoring only

    def retention_seconds(self) -> float | None:
        try:
            found = self.client.get_subscription(request={"subscription": self.subscription})
        except self._errors as exc:
            raise self._unavailable(exc) from None
        retention = found.message_retention_duration
        seconds = retention.total_seconds() if retention else 0.0
        return seconds or 7 * 24 * 3600.0  # a subscription's default

    def close(self) -> None:
        self.client.close()


def queue_for(lake: str, source: EventSource, config: AnyLake) -> EventQueue:
    """The queue a lake's events come from; raises ``LakeUnavailableError`` naming a missing secret."""
    if isinstance(source, SqsSource):
        return SqsQueue(lake, source, config)
    if isinstance(source, AzureQueueSource):
        return AzureQueue(lake, source)
    if isinstance(source, PubSubSource):
        return PubSubQueue(lake, source, config)
    return KafkaQueue(lake, source)
