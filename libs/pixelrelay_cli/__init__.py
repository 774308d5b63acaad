"""The `pixelrelay` command: the operator's `pixelrelay admin …` (pixelrelay_cli.admin).

A package of its own beside the runtime library (pixelrelay), so no service imports it and
the CLI can move to a client distribution without dragging the services' code along."""
