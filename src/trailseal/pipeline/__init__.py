"""Event pipeline: everything between parsing and sequencing, as a visible list of stages."""
