"""Marshmallow schemas: one validates, serialises and documents each endpoint (OpenAPI)."""
