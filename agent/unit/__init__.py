"""The field unit: its configuration, devices, measurements, buffer and delivery."""
