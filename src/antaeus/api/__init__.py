"""The REST API: FastAPI app, routes, schemas, auth, error handlers."""
