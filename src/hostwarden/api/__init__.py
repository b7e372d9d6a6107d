"""HTTP interface: the FastAPI app factory, permission dependencies, problem responses."""
