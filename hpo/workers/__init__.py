"""Many workers on one study: GPU slots, a supervisor, crash recovery and an exact budget.

Every worker is an ordinary :func:`hpo.runner.run_study` call sharing the study's storage;
the modules here decide which trials count, who owns a running trial, what happens to it
when its process dies, and how a machine's GPUs are split into worker slots.
"""
