"""Development tools, installed by `make setup` and never by the production image: the
launcher behind `make run` and the test and bench platforms (devstack), port leases, and
the parent-death guard of the processes it starts."""
