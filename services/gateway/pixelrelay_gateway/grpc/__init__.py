"""The gRPC edge: pixelrelay.v1.PublicApi → PublicApi."""
