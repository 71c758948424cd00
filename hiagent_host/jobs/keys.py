"""Every Redis key the redis backend reads or writes, arq's own included.

arq's keys are global (not per queue): `arq:job:<id>` (the enqueued call, until it finishes),
`arq:in-progress:<id>` (set while a worker runs it; expires job timeout + 10 s after the
start), `arq:result:<id>` (the outcome, kept `result_ttl_s`), `arq:retry:<id>` (try counter),
and the queue itself, a sorted set named `queue.queue_name` (job id → due time in ms).
Ours sit beside them under `hiagent:`.
"""

from __future__ import annotations

from typing import Final

from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

ARQ_JOB: Final = job_key_prefix
ARQ_IN_PROGRESS: Final = in_progress_key_prefix
ARQ_RESULT: Final = result_key_prefix
ARQ_RETRY: Final = retry_key_prefix

# A hash per job: spec, enqueued_at_ms, started_at_ms, finished_at_ms, phase, runs, cancel.
JOB: Final = "hiagent:job:"
# queue + spec digest → the id of the newest job with those arguments (duplicate detection).
DEDUP: Final = "hiagent:dedup:"
# A sorted set per queue: worker id → its last heartbeat (ms).
WORKERS: Final = "hiagent:workers:"
# The cluster (hiagent_host.cluster), per queue name: a pub/sub channel of package changes,
# a hash of the nodes (node id → JSON, with its heartbeat), one install lock per package.
PACKAGE_CHANGES: Final = "hiagent:packages:"
NODES: Final = "hiagent:nodes:"
PACKAGE_LOCK: Final = "hiagent:lock:"


def job(job_id: str) -> str:
    return JOB + job_id


def dedup(queue_name: str, digest: str) -> str:
    return f"{DEDUP}{queue_name}:{digest}"


def workers(queue_name: str) -> str:
    return WORKERS + queue_name


def package_changes(queue_name: str) -> str:
    return PACKAGE_CHANGES + queue_name


def nodes(queue_name: str) -> str:
    return NODES + queue_name


def package_lock(queue_name: str, dir_name: str) -> str:
    return f"{PACKAGE_LOCK}{queue_name}:{dir_name}"


def arq_job(job_id: str) -> str:
    return ARQ_JOB + job_id


def arq_in_progress(job_id: str) -> str:
    return ARQ_IN_PROGRESS + job_id


def arq_result(job_id: str) -> str:
    return ARQ_RESULT + job_id


def arq_retry(job_id: str) -> str:
    return ARQ_RETRY + job_id


# The name the install job is enqueued under (arq looks the function up by it).
JOB_FUNCTION: Final = "hiagent_install"

# Fields of the JOB hash.
F_SPEC: Final = "spec"
F_ENQUEUED_AT_MS: Final = "enqueued_at_ms"
F_STARTED_AT_MS: Final = "started_at_ms"
F_FINISHED_AT_MS: Final = "finished_at_ms"
F_PHASE: Final = "phase"  # a Step as JSON (a bare phase name in older records)
F_RUNS: Final = "runs"
F_CANCEL: Final = "cancel"
