"""Storage events: what a queue says about a lake's files, and the intake that records them.

:mod:`messages` turns one message (S3 notifications direct or through SNS, Event Grid, GCS
Pub/Sub, lakesync's own) into file events; :mod:`queues` receives and acknowledges messages
(SQS, Azure Storage queues, Kafka); :mod:`intake` routes the events to the lake's datasets,
confirms each file with the store, announces it in the ledger and only then acknowledges, and
reconciles with a listing when due.
"""
