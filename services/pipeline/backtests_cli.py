"""`ptf-backtest`: an operator's backtest steps over the pipeline's gRPC API (admin key).

    ptf-backtest start --tenant T --since YYYY-MM --until YYYY-MM --thresholds FILE.json
    ptf-backtest confirm TOKEN
    ptf-backtest status ID
    ptf-backtest metrics ID
    ptf-backtest diffs ID [--limit N] [--cursor C]

The admin key is read from PTF_ADMIN_KEY (never from the command line, where
other users could read it); the pipeline's address from --target or
PTF_PIPELINE_ADDR. Every answer is printed as JSON; a refused request prints its
error code and exits 1, a usage error exits 64.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.runtime.config.settings import default_ports
from services.runtime.keys.channels import keyed_channel

EXIT_USAGE = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> _Parser:
    parser = _Parser(prog="ptf-backtest", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--target", default=os.environ.get("PTF_PIPELINE_ADDR", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="check a candidate, get a confirmation token")
    start.add_argument("--tenant", required=True)
    start.add_argument("--since", required=True, help="first period, YYYY-MM")
    start.add_argument("--until", required=True, help="last period, YYYY-MM")
    start.add_argument("--thresholds", required=True, type=Path, help="JSON {Group: {FIELD: v}}")
    confirm = commands.add_parser("confirm", help="consume the token and queue the backtest")
    confirm.add_argument("token")
    for name, text in (("status", "state and progress"), ("metrics", "old vs new counts")):
        commands.add_parser(name, help=text).add_argument("backtest_id")
    diffs = commands.add_parser("diffs", help="one page of per-invoice differences")
    diffs.add_argument("backtest_id")
    diffs.add_argument("--limit", type=int, default=100)
    diffs.add_argument("--cursor", default="")
    return parser


def _job(job: pipeline_pb2.BacktestJob) -> dict[str, Any]:
    return {
        "backtest_id": job.backtest_id,
        "state": pipeline_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"),
        "progress": {"replayed": job.replayed, "total": job.total},
    }


async def _run(args: argparse.Namespace, key: str) -> dict[str, Any]:
    target = args.target or f"127.0.0.1:{default_ports('pipeline')[0]}"
    async with keyed_channel(target, (("x-admin-key", key),)) as channel:
        stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
        if args.command == "start":
            reply = await stub.StartBacktest(
                pipeline_pb2.StartBacktestRequest(
                    tenant_id=args.tenant,
                    period_start=args.since,
                    period_end=args.until,
                    candidate_thresholds_json=args.thresholds.read_text(encoding="utf-8"),
                )
            )
            return {
                "confirmation_token": reply.token.token,
                "expires_at": reply.token.expires_at.ToJsonString(),
                "params_hash": reply.params_hash,
            }
        if args.command == "confirm":
            job = await stub.ConfirmBacktest(pipeline_pb2.ConfirmBacktestRequest(token=args.token))
            return _job(job)
        limit = args.limit if args.command == "diffs" else 0
        cursor = args.cursor if args.command == "diffs" else ""
        result = await stub.GetBacktestResult(
            pipeline_pb2.GetBacktestResultRequest(
                backtest_id=args.backtest_id, limit=limit, cursor=cursor
            )
        )
        if args.command == "status":
            return {**_job(result.job), "result_hash": result.result_hash}
        if args.command == "metrics":
            return {**_job(result.job), "metrics": json.loads(result.metrics_json or "null")}
        return {
            "items": [json.loads(item) for item in result.diffs_json],
            "next_cursor": result.next_cursor or None,
            "truncated": result.truncated,
        }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = os.environ.get("PTF_ADMIN_KEY", "")
    if not key:
        print("ptf-backtest: set PTF_ADMIN_KEY to an admin key", file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = asyncio.run(_run(args, key))
    except grpc.aio.AioRpcError as exc:
        print(f"ptf-backtest: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ptf-backtest: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
