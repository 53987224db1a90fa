"""Host-side training and export of vessel models (needs the optional torch extra)."""
