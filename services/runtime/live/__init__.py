"""The live data layer shared by every service (docs/SPEC.md §8).

One envelope for every live event (`envelope`), the channel names and who may
subscribe to them (`channels`), and the one place staleness is computed
(`staleness`). Services publish the facts they own; transports (SSE, gRPC)
only carry envelopes.
"""
