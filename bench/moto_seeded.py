"""A moto S3 server that starts with a large bucket already in it.

Putting 100,000 objects through the protocol costs moto ~10 minutes; its own backend takes them
in seconds. The objects are put into moto's backend in this process, then the server starts and
everything after (listing, the new objects of a tick, reads) goes over the real S3 protocol.

    python -m bench.moto_seeded --port 5000 --bucket big --prefix landing/events/ --files 100000

Prints ``ready`` once the server answers; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer


def key(prefix: str, i: int) -> str:
    """The i-th object: a day folder of 1,000 parts, keys growing with i."""
    return f"{prefix}day={i // 1000:03d}/part-{i:06d}.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--files", type=int, required=True)
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(args.bucket, "us-east-1")
    for i in range(args.files):
        backend.put_object(args.bucket, key(args.prefix, i), b"id\n1\n")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    main()
