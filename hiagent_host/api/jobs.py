"""Asynchronous install routes: submit, status, cancel, retry (the job backend does the work)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from hiagent_host.api import models
from hiagent_host.api.endpoints import endpoint
from hiagent_host.api.services import Services


@endpoint(models.InstallPackageAsync)
async def install_package_async(
    request: Request, s: Services, body: models.InstallPackageAsync
) -> Any:
    """Queue an install; poll GetInstallPackageAsyncStatus with the returned job id."""
    job_id = await s.jobs.submit(body.uri, body.filename, body.force)
    return {"job_id": job_id}


@endpoint(models.JobRef)
async def get_install_status(request: Request, s: Services, body: models.JobRef) -> Any:
    """queued / started / finished (with data) / failed / stopped (with reason)."""
    info = await s.jobs.status(body.job_id)
    return {
        "status": str(info.status),
        "reason": info.reason,
        "data": info.data,
        "phase": info.phase,
        "downloaded_bytes": info.downloaded_bytes,
        "download_size_bytes": info.download_size_bytes,
    }


@endpoint(models.ListJobs)
async def list_jobs(request: Request, s: Services, body: models.ListJobs) -> Any:
    """The newest install jobs first, with their status (expired jobs are gone)."""
    return await s.jobs.list(body.limit)


@endpoint(models.JobRef)
async def cancel_install(request: Request, s: Services, body: models.JobRef) -> None:
    """Cancel a queued or running install; a finished one is a 400 InvalidJobState."""
    await s.jobs.cancel(body.job_id)


@endpoint(models.JobRef)
async def retry_install(request: Request, s: Services, body: models.JobRef) -> Any:
    """Run a finished, failed or stopped install again: null if the id is reused, else the id."""
    job_id = await s.jobs.retry(body.job_id)
    return None if job_id == body.job_id else {"job_id": job_id}
