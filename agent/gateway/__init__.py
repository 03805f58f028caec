"""The centre's SMS gateway: the heartbeats units send by SMS, from the centre's modem (or
from gammu-smsd) into the collector's database.

- :mod:`agent.gateway.sms_gateway`: :class:`~agent.gateway.sms_gateway.SmsGateway` keeps
  the modem's AT port open, lists what the SIM stored, files it with
  :mod:`agent.centre.sms_inbox` and deletes only what was recorded.
- :mod:`agent.gateway.gammu`: the same filing for a message gammu-smsd hands to its
  ``RunOnReceive`` program in environment variables.

The gateway is the one place where a device driver (the modem's AT channel) meets the
centre's store; the centre itself never imports a driver (docs/architecture.md).
"""
