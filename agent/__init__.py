"""blankspot: field network-measurement agent and blank-spot map collector."""
__version__ = "0.1.0"
