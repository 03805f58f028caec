"""Hardware access: serial ports, the modem's AT channel, the GPS, the front panel."""
