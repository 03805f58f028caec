"""The ``blankspot`` console script (setup.cfg); the command is :mod:`agent.commands.main`."""
from agent.commands.main import main

__all__ = ["main"]
