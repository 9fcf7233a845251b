"""schemathesis holds each running service to its /openapi.json (SPEC §11, issue 12 item 7).

Fault: none; the input is whatever schemathesis generates from the document,
in both of its default generation modes (positive: data the document allows;
negative: data it forbids), with its default checks: no 5xx, status codes,
content types, headers and bodies as documented, allowed data accepted and
forbidden data rejected. Each service is run with the dev admin key (every
keyed route accepts it), with the dev tenant key (tenant routes, 403 on the
admin ones) and with no key at all (every keyed route answers its documented
401). Figure: zero failures over FUZZ_EXAMPLES examples per operation, mode and key.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from schemathesis import GenerationMode

from tests.conftest import StartService
from tests.contract.fuzz import fuzz_service
from tests.contract.services import SERVICES, service_starter

log = logging.getLogger(__name__)

FUZZ_EXAMPLES = 20
_MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
_KEYS = {
    "admin key": {"X-Admin-Key": "dev-admin-key"},
    "tenant key": {"X-API-Key": "dev-tenant-key"},
    "no key": {},
    "made-up key": {},
}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("keys", sorted(_KEYS))
@pytest.mark.parametrize("name", SERVICES)
async def test_schemathesis_finds_no_failure(
    name: str, keys: str, start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with service_starter(start_service, pg)(name) as svc:
        totals = await asyncio.to_thread(
            fuzz_service,
            svc.running.http_base,
            headers=_KEYS[keys],
            max_examples=FUZZ_EXAMPLES,
            modes=_MODES,
            generate_keys=keys == "made-up key",
        )
    log.warning(
        "schemathesis %s (%s): %d operations, %d examples, %d failures; statuses %s",
        name,
        keys,
        totals.operations,
        totals.examples,
        len(totals.failures),
        dict(sorted(totals.statuses.items())),
    )
    assert not totals.failures, "\n\n".join(
        f"{op}:\n{report}" for op, report in totals.failures.items()
    )
