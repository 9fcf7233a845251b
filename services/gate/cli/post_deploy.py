"""`gatectl post-deploy` (docs/seeds/003.txt §4): is the freshly deployed system actually working?

Steps, all run so the operator sees the whole picture:
1. ready: health `GET /health/ready` answers 200 with `status: ready`;
2. smoke: the three smoke fixtures are submitted to the pilot tenant through
   the pipeline API (`POST /full-process`) and each result is compared with
   its expectations;
3. system health: `GET /admin/system-health` answers 200 with a JSON object;
4. feedback: `GET /admin/feedback-stats` answers 200 with a JSON object.

Exit code (docs/seeds/003.txt §4.2): 1 when ready failed, else 2 when smoke failed,
else 3 when feedback failed, else 4 when anything else failed (partial
success: investigate, do not roll back), else 0.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from services.gate.cli import render
from services.gate.cli.exits import OK
from services.runtime.smoke_fixtures import expectation_failures, load_smoke_fixtures

EXIT_READY = 1
EXIT_SMOKE = 2
EXIT_FEEDBACK = 3
EXIT_PARTIAL = 4


@dataclass
class Step:
    """The outcome of one post-deploy step with what was seen."""

    name: str
    ok: bool = True
    details: list[str] = field(default_factory=list)

    def fail(self, detail: str) -> None:
        """Mark the step failed with what went wrong."""
        self.ok = False
        self.details.append(detail)


async def _get_json(
    session: aiohttp.ClientSession, url: str, step: Step, **kwargs: Any
) -> Mapping[str, Any] | None:
    try:
        async with session.get(url, **kwargs) as response:
            text = await response.text()
            if response.status != 200:
                step.fail(f"GET {url} returned {response.status}: {text[:200]}")
                return None
    except (aiohttp.ClientError, TimeoutError) as exc:
        step.fail(f"GET {url} failed: {type(exc).__name__} {exc}")
        return None
    try:
        body = json.loads(text)
    except ValueError:
        step.fail(f"GET {url} did not return JSON")
        return None
    if not isinstance(body, Mapping):
        step.fail(f"GET {url} did not return a JSON object")
        return None
    return body


async def check_ready(session: aiohttp.ClientSession, health_url: str) -> Step:
    """Step 1: the health service reports the system ready."""
    step = Step("ready")
    body = await _get_json(session, f"{health_url}/health/ready", step)
    if body is None:
        return step
    if body.get("status") != "ready":
        step.fail(f"status={body.get('status')!r}, failing={body.get('failing_checks')}")
        return step
    step.details.append(f"ready, build {body.get('build_id')}, config {body.get('config_hash')}")
    return step


async def check_smoke(
    session: aiohttp.ClientSession, api_url: str, api_key: str, tenant: str
) -> Step:
    """Step 2: each smoke fixture, processed for the pilot tenant, meets its expectations."""
    step = Step("smoke")
    for fixture in load_smoke_fixtures():
        url = f"{api_url}/full-process"
        try:
            async with session.post(
                url,
                params={"tenant_id": tenant},
                json=fixture.extraction,
                headers={"X-API-Key": api_key},
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            step.fail(f"{fixture.name}: POST {url} failed: {type(exc).__name__} {exc}")
            continue
        if status != 200:
            step.fail(f"{fixture.name}: POST /full-process returned {status}: {text[:200]}")
            continue
        try:
            body = json.loads(text)
        except ValueError:
            step.fail(f"{fixture.name}: response is not JSON")
            continue
        result = body.get("result") if isinstance(body, Mapping) else None
        if not isinstance(result, Mapping):
            step.fail(f"{fixture.name}: response has no processing result")
            continue
        failures = expectation_failures(result, fixture.expected)
        if failures:
            step.fail(f"{fixture.name}: " + "; ".join(failures))
        else:
            step.details.append(f"{fixture.name}: as expected")
    return step


async def check_system_health(
    session: aiohttp.ClientSession, api_url: str, admin_key: str, tenant: str
) -> Step:
    """Step 3: the system health report is served."""
    step = Step("system_health")
    body = await _get_json(
        session,
        f"{api_url}/admin/system-health",
        step,
        params={"tenant_id": tenant},
        headers={"X-Admin-Key": admin_key},
    )
    if body is not None:
        step.details.append("system health report available")
    return step


async def check_feedback(
    session: aiohttp.ClientSession, api_url: str, admin_key: str, tenant: str
) -> Step:
    """Step 4: feedback statistics are served."""
    step = Step("feedback")
    body = await _get_json(
        session,
        f"{api_url}/admin/feedback-stats",
        step,
        params={"tenant_id": tenant},
        headers={"X-Admin-Key": admin_key},
    )
    if body is not None:
        step.details.append(
            f"feedback coverage {body.get('feedback_coverage')}, "
            f"hint accuracy {body.get('hint_accuracy_rate')}"
        )
    return step


def exit_code(steps: Mapping[str, Step]) -> int:
    """docs/seeds/003.txt §4.2 exit code of the step outcomes."""
    if not steps["ready"].ok:
        return EXIT_READY
    if not steps["smoke"].ok:
        return EXIT_SMOKE
    if not steps["feedback"].ok:
        return EXIT_FEEDBACK
    if not all(step.ok for step in steps.values()):
        return EXIT_PARTIAL
    return OK


async def post_deploy(args: argparse.Namespace) -> int:
    """`gatectl post-deploy`: run every step, print them, return the exit code."""
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    health_url = args.health_url.rstrip("/")
    api_url = args.api_url.rstrip("/")
    async with aiohttp.ClientSession(timeout=timeout) as session:
        steps = {
            "ready": await check_ready(session, health_url),
            "smoke": await check_smoke(session, api_url, args.api_key or "", args.tenant),
            "system_health": await check_system_health(
                session, api_url, args.admin_key or "", args.tenant
            ),
            "feedback": await check_feedback(session, api_url, args.admin_key or "", args.tenant),
        }
    code = exit_code(steps)
    if args.json:
        document = {
            "exit_code": code,
            "steps": {n: {"ok": s.ok, "details": s.details} for n, s in steps.items()},
        }
        print(render.dumps(document))
    else:
        for step in steps.values():
            print(f"{'OK  ' if step.ok else 'FAIL'} {step.name}")
            for detail in step.details:
                print(f"     {detail}")
        print("all post-deploy checks passed" if code == OK else f"post-deploy exit {code}")
    return code
