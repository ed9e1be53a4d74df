"""How a lake's new files are found: a listing on every tick (the default), or storage events.

In ``events`` mode an intake receives the lake's file events from a queue (S3 -> SQS, S3 -> SNS
-> SQS, Azure Event Grid -> Storage queue, GCS -> Pub/Sub, or Kafka), writes each file into the lakehouse's
ledger as *announced* before it acknowledges the message, and a reconciliation listing every
``reconcile_every`` finds (and counts) the files the events missed. Secrets are names of
environment variables, never values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from lakesync.config.datasets import StrictModel
from lakesync.config.secrets import EnvSecret
from lakesync.config.units import parse_duration


class SqsSource(StrictModel):
    """S3 event notifications in an SQS queue (directly, or through an SNS topic)."""

    kind: Literal["sqs"]
    queue_url: str = Field(min_length=1)
    region: str | None = None
    """Default: the lake's region."""
    endpoint_url: str | None = None
    """Default: the lake's endpoint (an emulator, a private endpoint)."""
    access_key_id: EnvSecret | None = None
    secret_access_key: EnvSecret | None = None
    """Default: the lake's credentials (an S3 lake), else the default chain."""


class AzureQueueSource(StrictModel):
    """Event Grid ``BlobCreated`` / ``BlobDeleted`` events in an Azure Storage queue."""

    kind: Literal["azure_queue"]
    queue: str = Field(min_length=1)
    connection_string: EnvSecret
    """The storage account's connection string (it holds the key): its variable's name."""


class KafkaSource(StrictModel):
    """A Kafka topic of file events: S3-shaped ``Records`` or lakesync's own messages
    ``{"lake", "path", "size", "etag", "event_time", "type"}`` (path relative to the lake)."""

    kind: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    group_id: str = "lakesync"
    settings: dict[str, str] = Field(default_factory=dict)
    """More librdkafka settings (``security.protocol``, ``sasl.mechanism``, ``ssl.key.location``);
    never a secret (passwords, tokens, inline keys are refused)."""
    username: EnvSecret | None = None
    password: EnvSecret | None = None
    """SASL credentials, by variable name."""

    @field_validator("settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        secret = [
            k
            for k in value
            if any(w in k.lower() for w in ("password", "secret", "sasl.jaas", "ssl.key.pem", "token"))
        ]
        if secret:
            msg = (
                f"{', '.join(sorted(secret))} would put a secret in lakesync.yaml: give SASL credentials "
                "as `username: {env: NAME}` and `password: {env: NAME}`"
            )
            raise ValueError(msg)
        return value


class PubSubSource(StrictModel):
    """GCS Pub/Sub notifications (``OBJECT_FINALIZE`` / ``OBJECT_DELETE``, JSON_API_V1 payload) in
    a Pub/Sub subscription (pull)."""

    kind: Literal["pubsub"]
    subscription: str = Field(pattern=r"^projects/[^/]+/subscriptions/[^/]+$")
    """``projects/<project>/subscriptions/<name>``."""
    service_account_json: EnvSecret | None = None
    """A service account key (its JSON, by variable name); default: the lake's credentials (a
    GCS lake), else Google's default credentials. ``$PUBSUB_EMULATOR_HOST`` points the client
    at an emulator."""


EventSource = Annotated[
    SqsSource | AzureQueueSource | KafkaSource | PubSubSource, Field(discriminator="kind")
]


class DiscoverySettings(StrictModel):
    """``discovery:`` of a lake."""

    mode: Literal["listing", "events"] = "listing"
    source: EventSource | None = None
    reconcile_every: float = 3600.0
    """Seconds between reconciliation listings in events mode; accepts ``1h``, ``15m`` (``0s``:
    every intake)."""
    reconcile_grace: float = 900.0
    """A file younger than this that only the listing found may still have its event on the way."""
    on_delete: Literal["ignore", "propagate"] = "ignore"
    """A file deleted from the lake (a delete event, or a reconciliation that no longer finds it):
    ``ignore`` keeps its rows; ``propagate`` removes them from the table, with an audit record."""
    max_messages: int = Field(default=1000, gt=0)
    """Messages received per intake (one sensor tick, one ``lakesync sync``), at most."""
    wait_seconds: float = Field(default=1.0, ge=0, le=20)
    """How long one receive waits for messages when the queue is empty."""

    @field_validator("reconcile_every", "reconcile_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value, zero=True)

    @model_validator(mode="after")
    def _source(self) -> DiscoverySettings:
        if self.mode == "events" and self.source is None:
            msg = (
                "events mode needs a `source` (kind: sqs, azure_queue, pubsub or kafka) to receive the "
                "lake's file events from"
            )
            raise ValueError(msg)
        return self
