"""The HTTP API: serves the active published bundle to marketing (FastAPI).

It reads only the bundle format (see api.bundle) and never imports `pipelines`; build the app
with `api.main.create_app`, run it with `api.server.serve`.
"""
