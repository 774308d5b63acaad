"""gateway: the public API (gRPC PublicApi and its REST translation), task state, web UI."""
