"""The ``blankspot`` command: its subcommands, their exit statuses and what they share."""
