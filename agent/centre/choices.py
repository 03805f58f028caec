"""What the centre's commands offer and fall back to, apart from the code that does the work:
building the ``blankspot`` command line (every command, for ``--help``) then imports none of
the collector, the exporters or the live map, and a unit's ``blankspot run`` starts without
them."""
from __future__ import annotations

COLLECTOR_GROUP = "blankspot-collectors"  # the MQTT 5 shared-subscription group of collectors
COLLECTOR_INFLIGHT = 100                  # MQTT 5 Receive Maximum: unacknowledged messages the broker may send
COLLECTOR_MESSAGES_PER_COMMIT = 100       # most MQTT messages stored in one transaction
EXPORT_LAYERS = ("points", "tracks", "segments", "cells")
EXPORT_FORMATS = ("geojson", "kml", "csv")
SERVE_PORT = 8090
