"""A client process racing one override token through the gate: `python -m tests.gate.race_client`.

Arguments: gate target, spec file, raw token, number of concurrent calls, API key.
Prints "ready", waits for "go" on stdin, then sends the calls at once (half
Preflight, half Check) and prints a JSON object counting override results.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path

from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.runtime.keys.channels import keyed_channel

FACTS = {"tests_passed": "true", "smoke_passed": "true"}


async def _one(stub: gate_pb2_grpc.GateServiceAsyncStub, spec: str, token: str, check: bool) -> str:
    request = gate_pb2.PreflightRequest(spec_yaml=spec, facts=FACTS, override_token=token)
    if check:
        response = await stub.Check(gate_pb2.CheckRequest(preflight=request))
        result = response.result
    else:
        result = await stub.Preflight(request)
    return str(gate_pb2.OverrideResult.Name(result.override_result)).removeprefix(
        "OVERRIDE_RESULT_"
    )


async def main(target: str, spec: str, token: str, calls: int, key: str) -> None:
    async with keyed_channel(target, (("x-api-key", key),)) as channel:
        stub: gate_pb2_grpc.GateServiceAsyncStub = gate_pb2_grpc.GateServiceStub(channel)  # type: ignore[assignment]
        await channel.channel_ready()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(
            *(_one(stub, spec, token, check=i % 2 == 0) for i in range(calls))
        )
    print(json.dumps(collections.Counter(results)), flush=True)


if __name__ == "__main__":
    target, spec_file, token, calls, key = sys.argv[1:6]
    asyncio.run(main(target, Path(spec_file).read_text(encoding="utf-8"), token, int(calls), key))
