"""Pure domain of the gate service: specs, signals, the verdict evaluator, overrides, Check.

No I/O and no transport: nothing here imports asyncpg, redis, aiohttp, grpc or
generated protobuf code, so property tests hit it directly and adapters map
its enums to the proto enums by name.
"""
