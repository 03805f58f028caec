"""blankspot: field network-measurement agent and blank-spot map collector."""
# A release also moves agent.shared.clock.RELEASE_DATE: GPS dates before it are taken for a
# week rollover and corrected.
__version__ = "0.1.0"
