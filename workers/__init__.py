"""exotel-pipeline: Exotel call events through Kafka.

One package per worker (``ingress``, ``settings``, ``archiver``, ``enricher``); the pieces they
share (configuration, JSON, Kafka, S3, the Exotel client, errors) live once at this level.
"""
