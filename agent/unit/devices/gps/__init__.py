"""GPS receivers speaking NMEA 0183.

``nmea`` turns one line of receiver output into a typed sentence (or raises ``NmeaError``);
``fix`` merges the sentences of one measurement epoch into a ``Fix``. Both are pure: no
serial I/O happens here.
"""
