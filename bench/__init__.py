"""`make bench`: the platform measured on this machine, everything on one box."""
