"""The webhook ingress: Exotel's HTTP webhooks onto ``exotel.webhook.*`` topics, durably.

Run it with ``exopipe ingress``; :func:`workers.ingress.app.build_app` builds the aiohttp app.
"""

from __future__ import annotations

__all__: list[str] = []
