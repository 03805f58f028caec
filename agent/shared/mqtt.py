"""The MQTT client as the unit, its doctor, the collector and the demo make it.

:func:`new_client` builds a paho client with the version-2 callbacks, the protocol named as
the config names it (``"5"`` or ``"3.1.1"``) and the session kept or not; :func:`secure`
gives it a login and TLS that always verifies the broker's certificate.  Connecting,
callbacks and what a failure means stay with each caller.

The session (subscriptions, and QoS 1 messages queued while the client is away) is asked
for differently by the two versions:

- MQTT 3.1.1: by the client, ``clean_session=False``; that is ``persistent``;
- MQTT 5: at each connect, ``clean_start=False`` with a Session Expiry Interval; paho refuses
  ``clean_session`` for it, and without those the session ends with the connection.
"""
from __future__ import annotations

import ssl
from os import PathLike

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


def new_client(client_id: str, *, protocol: str = "5", persistent: bool = True, manual_ack: bool = False,
               reconnect: bool = True) -> mqtt.Client:
    """A client speaking ``protocol``; see the module docstring for ``persistent``.

    ``manual_ack``: a received QoS 1 message is acknowledged only by ``client.ack()``, once it
    is safe.  ``reconnect=False``: a failed connection is left to the caller, which makes a
    fresh client for the next attempt.  ``ValueError`` for an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"MQTT protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if protocol == "5" else not persistent,
        protocol=PROTOCOLS[protocol],
        reconnect_on_failure=reconnect,
        manual_ack=manual_ack,
    )


def secure(client: mqtt.Client, *, username: str | None = None, password: str | None = None, tls: bool = False,
           ca_file: str | PathLike[str] | None = None, cert_file: str | PathLike[str] | None = None,
           key_file: str | PathLike[str] | None = None) -> None:
    """Log in as ``username`` when one is given; with ``tls``, encrypt the connection.

    Over TLS the broker must show a certificate signed by ``ca_file`` (the system's CAs when
    None) for the host connected to; ``cert_file`` and ``key_file`` are the client's own
    certificate, for a broker that asks for one.  Without ``tls`` the files are not used.
    The files are read here: ``OSError``, ``ssl.SSLError`` or ``ValueError`` when one cannot
    be used.
    """
    if username is not None:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(
            ca_certs=_text(ca_file),
            certfile=_text(cert_file),
            keyfile=_text(key_file),
            cert_reqs=ssl.CERT_REQUIRED,
        )


def _text(path: str | PathLike[str] | None) -> str | None:
    return None if path is None else str(path)
