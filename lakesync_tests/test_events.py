"""Live sync from storage events, on real servers: S3 -> SQS (and via SNS) on moto, Kafka on
librdkafka's mock cluster; what a message says, the intake's order (announce, then acknowledge),
reconciliation that counts what the events missed."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest
import yaml
from confluent_kafka import Producer

from lakesync.config import load_config
from lakesync.defs.launch import sync
from lakesync.defs.providers import open_lakehouse
from lakesync.demo.servers import PUBSUB_EMULATOR, Server
from lakesync.discover.events.messages import BadMessage, file_events
from lakesync.state.inbox import Inbox
from lakesync_tests.cloud import new_bucket
from lakesync_tests.commands import cli
from lakesync_tests.lakes import ORDERS_CONTRACT, orders_rows, write_orders_parquet
from lakesync_tests.test_cloud_sync import parquet_bytes


# -- what a message says -----------------------------------------------------------------------
def _s3(name: str, key: str) -> dict[str, Any]:
    return {
        "eventName": name,
        "eventTime": "2026-12-01T10:00:00.000Z",
        "s3": {"object": {"key": key, "size": 7, "eTag": "abc"}},
    }


def test_s3_notifications_direct_through_sns_and_base64_give_their_files() -> None:
    body = json.dumps(
        {
            "Records": [
                _s3("ObjectCreated:Put", "landing/a+b/%C3%BC.parquet"),
                _s3("ObjectRemoved:Delete", "x"),
            ]
        }
    )
    (created, deleted) = file_events(body)
    assert (created.key, created.kind, created.size, created.etag) == (
        "landing/a b/ü.parquet",
        "created",
        7,
        "abc",
    )
    assert deleted.kind == "deleted"
    assert (
        file_events(json.dumps({"Type": "Notification", "Message": body}))[0].key == "landing/a b/ü.parquet"
    )
    assert file_events(base64.b64encode(body.encode()).decode())[0].key == "landing/a b/ü.parquet"
    assert file_events(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []


def test_event_grid_gcs_and_lakesync_messages_give_their_files() -> None:
    grid = {
        "eventType": "Microsoft.Storage.BlobCreated",
        "subject": "/blobServices/default/containers/c/blobs/exports/a%20b.csv",
        "eventTime": "2026-12-01T10:00:00Z",
        "data": {"contentLength": 12, "eTag": "0x1"},
    }
    assert [(e.key, e.size) for e in file_events(json.dumps([grid]))] == [("exports/a b.csv", 12)]
    gcs = {"kind": "storage#object", "name": "events/c.ndjson", "bucket": "b", "size": "3"}
    assert file_events(json.dumps(gcs), {"eventType": "OBJECT_FINALIZE"})[0].size == 3
    assert file_events(json.dumps(gcs), {"eventType": "OBJECT_METADATA_UPDATE"}) == []
    own = file_events(json.dumps({"lake": "onprem", "path": "/2026/a.csv"}))[0]
    assert (own.key, own.lake, own.relative) == ("2026/a.csv", "onprem", True)


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        json.dumps({"hello": 1}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
    ],
)
def test_a_message_that_is_not_a_file_event_says_what_it_is_not(body: str) -> None:
    with pytest.raises(BadMessage, match=r"not|without"):
        file_events(body)


# -- S3 -> SQS on moto -------------------------------------------------------------------------
def _clients(server: Server) -> tuple[Any, Any, Any]:
    kw = {
        "endpoint_url": server.url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
    return boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("sns", **kw)


def _notify(s3: Any, sqs: Any, sns: Any, bucket: str, queue: str, *, via_sns: bool = False) -> str:
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    if via_sns:
        topic = sns.create_topic(Name=f"{queue}-topic")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        setting = {"TopicConfigurations": [{"TopicArn": topic, "Events": events}]}
    else:
        setting = {"QueueConfigurations": [{"QueueArn": arn, "Events": events}]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=setting)
    return url


def _events_config(tmp_path: Path, lake: dict[str, Any], discovery: dict[str, Any]) -> Path:
    lake = {**lake, "discovery": {"mode": "events", **discovery}}
    document = {
        "lakehouse": {"uri": str(tmp_path / "lakehouse")},
        "lakes": {"eu": lake},
        "tables": {"orders": {"mode": "append", "contract": ORDERS_CONTRACT}},
    }
    path = tmp_path / "lakesync.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _sqs_lake(
    tmp_path: Path, server: Server, datasets: dict[str, Any], **discovery: Any
) -> tuple[Any, Any, Any, str, Path]:
    """A fresh bucket whose notifications go to an SQS queue, and the events-mode config of a
    lake on it: (s3 client, sqs client, bucket, queue url, config path)."""
    s3, sqs, sns = _clients(server)
    bucket = new_bucket("s3", server)
    queue = _notify(s3, sqs, sns, bucket.name, bucket.name)
    source = {"kind": "sqs", "queue_url": queue}
    return (
        s3,
        sqs,
        bucket,
        queue,
        _events_config(tmp_path, bucket.lake(datasets), {"source": source, **discovery}),
    )


def _rows(config_path: Path) -> pl.DataFrame:
    config = load_config(config_path)
    house = open_lakehouse(config)
    return pl.read_delta(house.table_uri("orders"))


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_S3_KEY", "testing")
    monkeypatch.setenv("LAKE_S3_SECRET", "testing")


@pytest.mark.usefixtures("s3_env", "dagster_home")
def test_s3_events_through_sqs_ingest_every_file_once_and_reconciliation_counts_the_missed(
    tmp_path: Path, s3_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, sqs, sns = _clients(s3_server)
    bucket = new_bucket("s3", s3_server)
    queue = _notify(s3, sqs, sns, bucket.name, bucket.name)
    names = [f"landing/orders/{n:02d}.parquet" for n in range(57)] + [
        "landing/orders/a b.parquet",
        "landing/orders/ü.parquet",
    ]
    names.append("landing/other/ignored.parquet")  # no dataset of the lake: ignored
    lake = bucket.lake(
        {"orders": {"pattern": "orders/*.parquet", "format": "parquet", "table": "orders"}}, prefix="landing/"
    )
    path = _events_config(
        tmp_path,
        lake,
        {"source": {"kind": "sqs", "queue_url": queue}, "reconcile_every": "0s", "reconcile_grace": "0s"},
    )
    config = load_config(path)
    for n, name in enumerate(names):
        bucket.put(name, parquet_bytes(orders_rows(n * 10, 2)))
    sqs.send_message(QueueUrl=queue, MessageBody="a poison message")
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps({"Records": [_s3("ObjectCreated:Put", "landing/orders/00.parquet")]}),
    )  # a duplicate
    first = sync(config)
    assert first.ok, first.failures
    (line,) = first.intakes
    assert "59 file(s) announced" in line and "1 ignored" in line and "1 message(s) not understood" in line, (
        line
    )
    assert "0 missed by events" in line
    rows = _rows(path)
    assert rows.height == 59 * 2 and rows["order_id"].is_unique().all()
    assert {"eu/orders/a b.parquet", "eu/orders/ü.parquet"} <= set(rows["_lakesync_file"])
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "0"
    )
    from lakesync.state.inbox import event_lags
    from lakesync.state.ledger_state import ledger_states

    house = open_lakehouse(config)
    lags = event_lags(list(ledger_states(house, house.open(house.ledger_uri), ["eu.orders"]).values()))
    assert lags is not None and 0 < lags[0] <= lags[1] < 120  # storage event -> committed, seconds
    failed = Inbox(open_lakehouse(config)).entries("eu").filter(pl.col("kind") == "failed_message")
    assert failed.height == 1 and "not JSON" in failed["reason"][0]
    # Notifications off for five files: only the reconciliation finds them, and counts them.
    s3.put_bucket_notification_configuration(Bucket=bucket.name, NotificationConfiguration={})
    for n in range(5):
        bucket.put(f"landing/orders/late-{n}.parquet", parquet_bytes(orders_rows(10_000 + n * 10, 2)))
    second = sync(config)
    assert second.ok, second.failures
    assert "5 missed by events" in second.intakes[0], second.intakes
    assert _rows(path).height == 64 * 2
    summary = Inbox(open_lakehouse(config)).summary("eu")
    assert (summary.missed_last, summary.missed_total) == (5, 5)
    from lakesync.state.audit import AuditLog

    audit = AuditLog(open_lakehouse(config)).read().filter(pl.col("kind") == "file")
    found = dict(zip(audit["path"].to_list(), audit["discovered_by"].to_list(), strict=True))
    assert found["orders/late-0.parquet"] == "reconcile" and found["orders/00.parquet"] == "event"
    third = sync(config)
    assert "0 file(s) announced" in third.intakes[0] and _rows(path).height == 64 * 2
    status = cli(capsys, "status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    (line,) = [x for x in status.stdout.splitlines() if x.startswith("eu ") and " sqs " in x]
    assert "eu: a message not understood:" in status.stderr and "not JSON" in status.stderr
    assert line.split()[-3:] == ["0", "5", "1"]  # missed by the last reconciliation, in all, not understood


@pytest.mark.usefixtures("s3_env", "dagster_home")
def test_the_reconciliation_of_a_dataset_with_ordered_keys_lists_after_the_greatest_known_key(
    tmp_path: Path, s3_server: Server
) -> None:
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders", "ordered_keys": True}
    s3, _, bucket, _, path = _sqs_lake(
        tmp_path, s3_server, {"orders": dataset}, reconcile_every="0s", reconcile_grace="0s"
    )
    for n in (10, 20):
        bucket.put(f"{n:03d}.parquet", parquet_bytes(orders_rows(n * 10, 2)))
    assert sync(load_config(path)).ok and _rows(path).height == 4
    # Notifications off: two files with greater keys, and one that sorts before the greatest known.
    s3.put_bucket_notification_configuration(Bucket=bucket.name, NotificationConfiguration={})
    for n in (30, 40, 15):
        bucket.put(f"{n:03d}.parquet", parquet_bytes(orders_rows(n * 10, 2)))
    outcome = sync(load_config(path))
    assert outcome.ok, outcome.failures
    assert "reconciled: 2 listed, 2 missed by events" in outcome.intakes[0], outcome.intakes
    assert sorted(set(_rows(path)["_lakesync_file"])) == [f"eu/{n:03d}.parquet" for n in (10, 20, 30, 40)]


@pytest.mark.usefixtures("s3_env", "dagster_home")
def test_s3_events_through_sns_are_unwrapped(tmp_path: Path, s3_server: Server) -> None:
    s3, sqs, sns = _clients(s3_server)
    bucket = new_bucket("s3", s3_server)
    queue = _notify(s3, sqs, sns, bucket.name, bucket.name, via_sns=True)
    lake = bucket.lake({"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}})
    path = _events_config(tmp_path, lake, {"source": {"kind": "sqs", "queue_url": queue}})
    for n in range(3):
        bucket.put(f"{n}.parquet", parquet_bytes(orders_rows(n * 10, 2)))
    outcome = sync(load_config(path))
    assert outcome.ok and "3 file(s) announced" in outcome.intakes[0], outcome.intakes
    assert _rows(path).height == 6


@pytest.mark.usefixtures("s3_env", "dagster_home")
def test_a_queue_that_cannot_be_reached_fails_its_lake_clearly(tmp_path: Path, s3_server: Server) -> None:
    bucket = new_bucket("s3", s3_server)
    lake = bucket.lake({"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}})
    source = {"kind": "sqs", "queue_url": f"{s3_server.url}/123456789012/no-such-queue"}
    outcome = sync(load_config(_events_config(tmp_path, lake, {"source": source})))
    assert not outcome.ok
    assert any("eu: events not received" in f and "no-such-queue" in f for f in outcome.failures), (
        outcome.failures
    )


# -- Kafka on librdkafka's mock cluster ------------------------------------------------------
@pytest.fixture
def kafka() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "lakesync_tests.kafka_mock"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("bootstrap "), line
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def _kafka_lake(folder: Path, bootstrap: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A local lake of parquet orders (its lakesync.yaml entry) and a Kafka source of its events."""
    lake = {
        "provider": "local",
        "root": str(folder),
        "datasets": {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}},
    }
    return lake, {
        "kind": "kafka",
        "bootstrap_servers": bootstrap,
        "topic": "files",
        "group_id": "lakesync-test",
    }


def _produce(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for message in messages:
        producer.produce(topic, json.dumps(message).encode())
    assert producer.flush(10) == 0


KILLED_INTAKE = """
import os, signal, sys
from lakesync.discover.events.queues import KafkaQueue
KafkaQueue.ack = lambda self, messages: os.kill(os.getpid(), signal.SIGKILL)
from lakesync.config import load_config
from lakesync.discover.events.intake import drain_all
from lakesync.discover.stores import default_store
from lakesync.state.lakehouse import lakehouse_for
config = load_config(sys.argv[1])
drain_all([(n, lake, default_store(n, lake)) for n, lake in config.lakes.items()], lakehouse_for(config), run_id="killed")
sys.exit(3)  # never reached
"""


@pytest.mark.usefixtures("dagster_home")
def test_kafka_events_of_a_local_lake_ingest_once_and_a_kill_before_the_commit_redelivers_harmlessly(
    tmp_path: Path, kafka: str
) -> None:
    folder = tmp_path / "onprem"
    for n in range(2):
        write_orders_parquet(folder / f"{n}.parquet", orders_rows(n * 10, 3))
    lake, source = _kafka_lake(folder, kafka)
    config = load_config(
        _events_config(tmp_path, lake, {"source": source, "wait_seconds": 2, "reconcile_every": "24h"})
    )
    _produce(kafka, "files", [{"lake": "eu", "path": f"{n}.parquet"} for n in range(2)])
    killed = subprocess.run(  # SIGKILLed after the ledger write, before the offsets are committed
        [sys.executable, "-c", KILLED_INTAKE, str(tmp_path / "lakesync.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    announced = pl.read_delta(str(tmp_path / "lakehouse" / "_ledger")).filter(pl.col("event") == "announced")
    assert announced.height == 2  # durable before the kill
    again = sync(config)  # the same messages again: their files are announced already
    assert again.ok, again.failures
    assert "2 message(s), 0 file(s) announced" in again.intakes[0], again.intakes
    assert _rows(tmp_path / "lakesync.yaml").height == 6
    for n in range(2, 4):
        write_orders_parquet(folder / f"{n}.parquet", orders_rows(n * 10, 3))
    duplicate_and_new = [{"lake": "eu", "path": f"{n}.parquet"} for n in range(1, 4)]
    _produce(kafka, "files", duplicate_and_new)
    third = sync(config)
    assert "3 message(s), 2 file(s) announced" in third.intakes[0], third.intakes
    rows = _rows(tmp_path / "lakesync.yaml")
    assert rows.height == 12 and rows["order_id"].is_unique().all()
    assert "0 message(s)" in sync(config).intakes[0]  # committed offsets: nothing comes back
    _produce(kafka, "files", [{"lake": "eu", "path": f"{n}.parquet"} for n in range(3)])  # known files
    document = yaml.safe_load((tmp_path / "lakesync.yaml").read_text())
    document["lakes"]["eu"]["discovery"]["max_messages"] = 1
    (tmp_path / "lakesync.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    limited = sync(load_config(tmp_path / "lakesync.yaml"))
    assert "1 message(s), 0 file(s) announced" in limited.intakes[0]
    assert "2 still queued" in limited.intakes[0], limited.intakes  # the group's lag


# -- under the daemon: the intake sensor, then the dataset sensor --------------------------------
@pytest.mark.usefixtures("s3_env")
def test_the_intake_sensor_announces_and_the_dataset_sensor_plans_without_listing(
    tmp_path: Path, s3_server: Server
) -> None:
    import dagster as dg

    from lakesync.defs import build_definitions

    s3, _, bucket, _, path = _sqs_lake(
        tmp_path,
        s3_server,
        {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}},
        reconcile_every="1h",
    )
    for n in range(3):
        bucket.put(f"{n}.parquet", parquet_bytes(orders_rows(n * 10, 2)))
    repo = build_definitions(load_config(path)).get_repository_def()
    resources = repo.get_top_level_resources()
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repo) as context:
            received = repo.get_sensor_def("events_eu").evaluate_tick(context)
        assert "3 file(s) announced" in (received.skip_message or ""), received.skip_message
        assert not received.run_requests
        observation, check = received.asset_events
        assert isinstance(observation, dg.AssetObservation) and isinstance(check, dg.AssetCheckEvaluation)
        assert observation.metadata["files_announced"].value == 3  # type: ignore[union-attr]
        assert check.check_name == "events" and check.passed  # the first reconciliation missed nothing
        assert observation.metadata["files_missed_by_events"].value == 0  # type: ignore[union-attr]
        s3.put_bucket_notification_configuration(Bucket=bucket.name, NotificationConfiguration={})
        bucket.put("3.parquet", parquet_bytes(orders_rows(30, 2)))  # no event: a listing would see it
        with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repo) as context:
            planned = repo.get_sensor_def("watch_eu__orders").evaluate_tick(context)
        assert len(planned.run_requests or []) == 1
        assert planned.run_requests[0].tags["lakesync/new_files"] == "3"  # type: ignore[index]


# -- Azure: azurite's blob and queue services ----------------------------------------------------
@pytest.mark.usefixtures("dagster_home")
def test_event_grid_blob_events_in_an_azure_queue_ingest_each_blob_once(
    tmp_path: Path, azure_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.queue import QueueClient

    from lakesync.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY, start_azure_queue

    monkeypatch.setenv("LAKE_AZURE_KEY", AZURITE_KEY)
    queue_server = start_azure_queue(tmp_path / "queue-server")
    try:
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"QueueEndpoint={queue_server.url};"
        )
        monkeypatch.setenv("LAKE_EVENTS_QUEUE", connection)
        queue = QueueClient.from_connection_string(connection, "blob-events")
        queue.create_queue()
        container = new_bucket("azure", azure_server)
        lake = container.lake(
            {"orders": {"pattern": "exports/*.parquet", "format": "parquet", "table": "orders"}}
        )
        source = {
            "kind": "azure_queue",
            "queue": "blob-events",
            "connection_string": {"env": "LAKE_EVENTS_QUEUE"},
        }
        path = _events_config(tmp_path, lake, {"source": source, "reconcile_every": "1h"})
        for n, name in enumerate(["exports/a.parquet", "exports/b c.parquet", "exports/a.parquet"]):
            if n < 2:
                container.put(name, parquet_bytes(orders_rows(n * 10, 2)))
            event = {  # what Event Grid puts in a Storage queue: base64 JSON
                "eventType": "Microsoft.Storage.BlobCreated",
                "subject": f"/blobServices/default/containers/{container.name}/blobs/{name}",
                "eventTime": "2026-12-01T10:00:00Z",
                "data": {"contentLength": 10},
            }
            queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())
        outcome = sync(load_config(path))
        assert outcome.ok, outcome.failures
        assert "3 message(s), 2 file(s) announced" in outcome.intakes[0], outcome.intakes
        assert _rows(path).height == 4
        assert queue.get_queue_properties().approximate_message_count == 0
        queue.close()
    finally:
        queue_server.stop()


def _gcs_notification(
    bucket: str, name: str, size: int, event: str = "OBJECT_FINALIZE"
) -> tuple[bytes, dict[str, str]]:
    """What a GCS bucket's Pub/Sub notification (JSON_API_V1) carries: the object resource and
    its attributes."""
    resource = {"kind": "storage#object", "bucket": bucket, "name": name, "size": str(size),
                "md5Hash": base64.b64encode(name.encode()).decode(), "updated": "2026-12-01T10:00:00.000Z"}  # fmt: skip
    attributes = {"eventType": event, "bucketId": bucket, "objectId": name, "payloadFormat": "JSON_API_V1"}
    return json.dumps(resource).encode(), attributes


@pytest.mark.skipif(
    not PUBSUB_EMULATOR.exists(),
    reason=f"Google's Pub/Sub emulator ({PUBSUB_EMULATOR}) is not on this machine: it ships only with "
    "Google's Cloud SDK, in no package registry the project may install from, and no other server "
    "speaks Pub/Sub; the parsing of GCS notifications is still tested without it",
)
@pytest.mark.usefixtures("dagster_home")
def test_gcs_notifications_in_a_pubsub_subscription_ingest_each_object_once(
    tmp_path: Path, gcs_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import pubsub_v1

    from lakesync.demo.servers import start_pubsub

    emulator = start_pubsub(tmp_path / "pubsub")
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.url.removeprefix("http://"))
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.create_topic(request={"name": "projects/lakesync-test/topics/gcs-events"}).name
        subscription = "projects/lakesync-test/subscriptions/lakesync"
        subscriber.create_subscription(request={"name": subscription, "topic": topic})
        bucket = new_bucket("gcs", gcs_server)
        lake = bucket.lake(
            {"orders": {"pattern": "exports/*.parquet", "format": "parquet", "table": "orders"}}
        )
        source = {"kind": "pubsub", "subscription": subscription}
        path = _events_config(tmp_path, lake, {"source": source, "reconcile_every": "1h", "wait_seconds": 1})
        sent = []
        for n, name in enumerate(["exports/a.parquet", "exports/b c.parquet"]):
            data = parquet_bytes(orders_rows(n * 10, 2))
            bucket.put(name, data)
            sent.append(_gcs_notification(bucket.name, name, len(data)))
        sent.append(_gcs_notification(bucket.name, "exports/a.parquet", 1))  # a redelivery
        sent.append(_gcs_notification(bucket.name, "exports/a.parquet", 1, "OBJECT_METADATA_UPDATE"))
        sent.append(_gcs_notification(bucket.name, "exports/gone.parquet", 1))  # deleted before the intake
        sent.append((b"not json", {}))
        for data, attributes in sent:
            publisher.publish(topic, data, **attributes).result()
        outcome = sync(load_config(path))
        assert outcome.ok, outcome.failures
        (line,) = outcome.intakes
        assert "6 message(s), 2 file(s) announced" in line and "1 message(s) not understood" in line, line
        rows = _rows(path)
        assert rows.height == 4 and rows["order_id"].is_unique().all()
        assert {"eu/exports/a.parquet", "eu/exports/b c.parquet"} == set(rows["_lakesync_file"])
        left = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=5)
        assert not left.received_messages  # every message was acknowledged after it was recorded
        again = sync(load_config(path))
        assert again.ok and "0 file(s) announced" in again.intakes[0], again.intakes
        assert _rows(path).height == 4
        subscriber.close()
    finally:
        emulator.stop()


# -- configuration ---------------------------------------------------------------------------
def test_events_mode_without_a_source_and_an_unset_queue_secret_are_named(tmp_path: Path) -> None:
    from lakesync.config.load import ConfigError
    from lakesync.config.preflight import preflight_problems

    folder = tmp_path / "lake"
    folder.mkdir()
    lake = {
        "provider": "local",
        "root": str(folder),
        "datasets": {"orders": {"pattern": "*.csv", "format": "csv", "table": "orders"}},
    }
    with pytest.raises(ConfigError, match=r"lakes\.eu\.discovery: .*events mode needs a `source`"):
        load_config(_events_config(tmp_path, lake, {}))
    kafka = {
        "kind": "kafka",
        "bootstrap_servers": "k:9092",
        "topic": "t",
        "settings": {"sasl.password": "hunter2"},
    }
    with pytest.raises(ConfigError, match=r"sasl\.password would put a secret in lakesync\.yaml") as refused:
        load_config(_events_config(tmp_path, lake, {"source": kafka}))
    assert "hunter2" not in str(refused.value)
    source = {"kind": "azure_queue", "queue": "q", "connection_string": {"env": "NOT_SET_HERE"}}
    config = load_config(_events_config(tmp_path, lake, {"source": source}))
    (problem,) = preflight_problems(config, {})
    assert problem.path == "lakes.eu.discovery.source.connection_string"
    assert "$NOT_SET_HERE is not set (a secret of the event queue of lake 'eu')" in problem.message


def test_files_missed_by_events_warn_with_what_to_check() -> None:
    from datetime import UTC, datetime

    from lakesync.monitor import events_verdict
    from lakesync.state.inbox import IntakeSummary

    now = datetime.now(tz=UTC)
    missed = events_verdict(
        IntakeSummary(now, missed_last=5, missed_total=7, failed_messages=1, last_intake=now)
    )
    assert (missed.outcome, missed.severity) == ("failed", "WARN")
    assert (
        "5 file(s) landed without an event" in missed.detail and "notification configuration" in missed.detail
    )
    fine = events_verdict(
        IntakeSummary(now, missed_last=0, missed_total=7, failed_messages=0, last_intake=now)
    )
    assert fine.outcome == "passed" and "7 missed in all" in fine.detail


@pytest.mark.usefixtures("dagster_home")
def test_a_deleted_file_leaves_a_merge_table_with_an_audit_record_and_an_older_version_is_not_resurrected(
    tmp_path: Path, kafka: str
) -> None:
    from lakesync.state.audit import AuditLog

    folder = tmp_path / "onprem"
    write_orders_parquet(folder / "a.parquet", orders_rows(1, 3, amount=1.0))  # keys 1, 2, 3
    write_orders_parquet(folder / "b.parquet", orders_rows(3, 2, amount=2.0))  # keys 3 (a newer version), 4
    write_orders_parquet(folder / "c.parquet", orders_rows(10, 2))  # keys 10, 11
    lake, source = _kafka_lake(folder, kafka)
    discovery = {"source": source, "wait_seconds": 2, "reconcile_every": "24h", "on_delete": "propagate"}
    path = _events_config(tmp_path, lake, discovery)
    document = yaml.safe_load(path.read_text())
    document["tables"]["orders"] = {"mode": "merge", "keys": ["order_id"], "contract": ORDERS_CONTRACT}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(path)
    for name in ("a", "b", "c"):
        _produce(kafka, "files", [{"path": f"{name}.parquet"}])
    assert sync(config).ok
    assert sorted(_rows(path)["order_id"].to_list()) == [1, 2, 3, 4, 10, 11]
    (folder / "b.parquet").unlink()
    deletes = [
        {"path": "b.parquet", "type": "deleted"},
        {"path": "c.parquet", "type": "deleted"},
    ]  # c is still there
    _produce(kafka, "files", deletes)
    outcome = sync(config)
    assert outcome.ok, outcome.failures
    assert "1 file(s) deleted with their 2 row(s)" in outcome.intakes[0], outcome.intakes
    rows = _rows(path)
    assert sorted(rows["order_id"].to_list()) == [
        1,
        2,
        10,
        11,
    ]  # 3 is gone: a.parquet's version stays superseded
    superseded = pl.read_delta(str(tmp_path / "lakehouse" / "_superseded" / "orders"))
    assert superseded.filter(pl.col("order_id") == 3)["_lakesync_file"].to_list() == ["eu/a.parquet"]
    (record,) = (
        AuditLog(open_lakehouse(config))
        .read(file="b.parquet")
        .filter(pl.col("kind") == "file_deleted")
        .iter_rows(named=True)
    )
    assert (record["rows_committed"], record["status"]) == (-2, "deleted")
    ledger = pl.read_delta(str(tmp_path / "lakehouse" / "_ledger"))
    assert ledger.filter((pl.col("path") == "b.parquet") & (pl.col("event") == "deleted")).height == 1
    # A file gone without an event: the reconciliation finds it gone.
    (folder / "c.parquet").unlink()
    document["lakes"]["eu"]["discovery"]["reconcile_every"] = "0s"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    again = sync(load_config(path))
    assert "1 file(s) deleted with their 2 row(s)" in again.intakes[0], again.intakes
    assert sorted(_rows(path)["order_id"].to_list()) == [1, 2]
    assert "1 file(s) deleted" not in sync(load_config(path)).intakes[0]  # deleted once


@pytest.mark.usefixtures("s3_env")
def test_an_intake_silent_for_longer_than_the_queue_keeps_messages_reconciles_at_once(
    tmp_path: Path, s3_server: Server
) -> None:
    from datetime import UTC, datetime, timedelta

    from lakesync.defs.providers import open_stores
    from lakesync.discover.events.intake import LakeIntake
    from lakesync.state.lakehouse import lakehouse_for

    s3, sqs, sns = _clients(s3_server)
    bucket = new_bucket("s3", s3_server)
    queue = _notify(s3, sqs, sns, bucket.name, bucket.name)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"MessageRetentionPeriod": "60"})
    lake = bucket.lake({"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}})
    config = load_config(
        _events_config(
            tmp_path, lake, {"source": {"kind": "sqs", "queue_url": queue}, "reconcile_every": "24h"}
        )
    )
    with open_stores(config) as stores:
        intake = LakeIntake("eu", config.lakes["eu"], stores["eu"], Inbox(lakehouse_for(config)), "test")
        assert intake.run().reconciled  # the first intake always reconciles
        assert not intake.run().reconciled  # not due for 24 h
        later = datetime.now(tz=UTC) + timedelta(minutes=2)  # silent longer than the queue's 60 s
        assert intake.run(now=later).reconciled


@pytest.mark.usefixtures("s3_env")
def test_a_file_stamped_in_the_second_events_mode_began_counts_as_missed_by_events(
    tmp_path: Path, s3_server: Server
) -> None:
    """S3's Last-Modified has whole seconds: a file that landed 0.6 s after events mode began
    is stamped 0.x s before it, and is still a file the events missed."""
    from datetime import timedelta

    from lakesync.defs.providers import open_stores
    from lakesync.discover.events.intake import LakeIntake
    from lakesync.state.lakehouse import lakehouse_for

    s3, sqs, sns = _clients(s3_server)
    bucket = new_bucket("s3", s3_server)
    queue = _notify(s3, sqs, sns, bucket.name, bucket.name)
    lake = bucket.lake({"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}})
    config = load_config(_events_config(tmp_path, lake, {"source": {"kind": "sqs", "queue_url": queue}}))
    bucket.put("late.parquet", parquet_bytes(orders_rows(1, 2)))
    with open_stores(config) as stores:
        entry = stores["eu"].stat("late.parquet")
        assert entry is not None and entry.modified.microsecond == 0  # whole seconds
        intake = LakeIntake("eu", config.lakes["eu"], stores["eu"], Inbox(lakehouse_for(config)), "test")
        began = entry.modified + timedelta(microseconds=400_000)
        listed, missed, _ = intake.reconcile(began, began + timedelta(hours=1))
        assert (listed, missed) == (1, 1)
