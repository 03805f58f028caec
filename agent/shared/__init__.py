"""What the field unit and the collector both speak: readings, the wire protocol, and the quantities and clocks under them."""
