"""The recording archiver: ``exotel.webhook.recording_ready`` in, one verified S3 object out.

``ssrf`` decides where a URL may be fetched from, ``fetch`` streams it to a temp file while
hashing, ``store`` uploads it with boto3 multipart, ``archive`` runs one event end to end and
``agents`` wires it to Kafka with offsets that move only past finished events.
"""
