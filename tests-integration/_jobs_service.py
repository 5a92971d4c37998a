"""A minimal service for the jobs test: one job that writes a row per run, audit to SQL.

Started as three real uvicorn processes by ``test_jobs_fleet.py``; everything comes from
``SAASFW_`` variables, as in a deployment. ``JOBS_TICKS_URL`` names the database the job
writes its rows to (``<schema>.ticks``, one row per run: what the test counts).
"""

from __future__ import annotations

import os

import asyncpg
from fastapi import FastAPI

from saasfw.app import Job, JobContext, ServiceSettings, create_app, load_settings


async def tick(context: JobContext) -> int:
    connection = await asyncpg.connect(os.environ["JOBS_TICKS_URL"])
    try:
        schema = os.environ["SAASFW_DB__SCHEMA_NAME"]
        # The schema is the test's own generated name, not input.
        await connection.execute(
            f'INSERT INTO "{schema}".ticks (period, runner) VALUES ($1, $2)',  # noqa: S608
            context.period,
            context.runner,
        )
    finally:
        await connection.close()
    return 1


def build() -> FastAPI:
    loaded = load_settings(ServiceSettings, service="jobs-service")
    every = float(os.environ.get("JOBS_EVERY", "2"))
    return create_app(loaded, jobs=[Job("tick", every, tick)])
