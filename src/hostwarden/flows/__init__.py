"""Flow and log collection: decoders, the tamper-evident store, collectors and imports."""
