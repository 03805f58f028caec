"""Cellular modems over AT commands.

Exceptions, as a tree::

    ModemError                      anything this package raises about a modem
    ├── AtParseError                a response's text is not what the parser expects (pure parsers)
    ├── AtTimeout                   no final result within the command's timeout
    ├── AtCommandError              the modem answered ERROR, +CME ERROR or +CMS ERROR
    ├── PortGone                    the serial port vanished or cannot be opened
    └── ProfileError                a firmware_configs file is wrong
"""
