"""The REST edge: HTTP → PublicApi. One module per route family, the error envelope,
the middleware, the pages."""
