"""python -m pixelrelay_cli: the `pixelrelay` command."""

from pixelrelay_cli.admin import main

raise SystemExit(main())
