"""The topic catalog: every topic, its key, its partitions and the JSON Schema of its events.

``topics.catalog`` declares the topics; ``topics.events`` builds and parses the CloudEvents 1.0
envelope every record carries; ``topics.schemas`` validates an event's ``data`` against its
topic's schema in ``topics/schemas/``.
"""

from topics.catalog import CATALOG, TopicSpec, by_name

__all__ = ["CATALOG", "TopicSpec", "by_name"]
