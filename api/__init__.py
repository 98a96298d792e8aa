"""The HTTP API (FastAPI) and the operator console it serves."""
