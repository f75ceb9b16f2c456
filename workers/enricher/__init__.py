"""The missed-call enricher: a missed call becomes a deduplicated, prioritized callback record.

``exopipe worker enricher`` runs :func:`workers.enricher.app.create_app`. Pure logic (numbers,
callee, hours, priority, the rolling count, expiry) lives in small modules with no Kafka in
them; ``agents`` wires them to the topics and ``tables`` declares the state.
"""

from __future__ import annotations

__all__: list[str] = []
