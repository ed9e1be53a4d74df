"""A Kafka cluster for the tests: librdkafka's built-in mock cluster, held by this process.

    python -m lakesync_tests.kafka_mock      # prints "bootstrap <host:port>", then serves until killed

No broker to install: the cluster lives inside this process's client (``test.mock.num.brokers``)
and other clients reach it on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import time

from confluent_kafka import Producer


class _Bootstrap(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"replaced with (\S+)", record.getMessage())
        if found:
            print(f"bootstrap {found.group(1)}", flush=True)


def main() -> None:
    log = logging.getLogger("kafka-mock")
    log.addHandler(_Bootstrap())
    log.setLevel(logging.INFO)
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "test.mock.num.brokers": 1, "logger": log})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        producer.poll(0.5)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
