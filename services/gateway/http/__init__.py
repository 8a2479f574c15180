"""The gateway's HTTP/JSON front end, OpenAPI document and browser playground (see frontend.py)."""

from services.gateway.http.frontend import HttpFrontend, http_frontend

__all__ = ["HttpFrontend", "http_frontend"]
