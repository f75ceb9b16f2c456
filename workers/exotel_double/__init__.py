"""A stand-in for Exotel's App Settings API, recording store, webhook sender and live audio
streams (:mod:`workers.exotel_double.streaming`).

Exotel itself is unreachable from dev machines and CI, so everything that talks to it (the settings
worker, the recording archiver, the webhook ingress) is exercised against this double instead. It
follows ``/work/shared/exotel-app-settings-api.txt`` to the letter and adds a loopback-only control
API (``/_control``) through which tests register apps, inject faults and read what was sent.

Start it with ``python -m workers.exotel_double`` or ``exopipe double serve``; drive it from tests
with :mod:`workers.exotel_double.control`.
"""

from __future__ import annotations

__all__ = ["API_PREFIX", "CONTROL_PREFIX"]

# Every spec path lives under the base URL's path, so a client configured with
# ``http://127.0.0.1:<port>/v2/integrations`` uses exactly the paths of the real service.
API_PREFIX = "/v2/integrations"
CONTROL_PREFIX = "/_control"
