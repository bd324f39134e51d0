"""Backfills: render the past ticks of a campaign that have no job yet.

Every tick of ``[start, end)`` starts (overlap ``allow_all``); a tick that already
rendered, is rendering or is buffered is left as it is, and a recorded skip or
refusal is replaced by a run with a job. Through the submit path like every run: a
backfill over quota is a 429 to its caller (models/service/submit.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from models.db.campaign_tables import Campaign
from models.db.campaigns import RunOrigin, RunStatus
from models.db.runs import runs_at
from models.domain.schedule.fire_times import backfill_ticks
from models.domain.seed_policy import run_seeds
from models.domain.spec import FieldError, JobSpec, SpecError
from models.service.campaign_runs import RunResult, record_tick, start_run
from models.service.submit import Submitter

# A backfill may render a tick that has a run of one of these kinds (it has no job).
_REPLACEABLE = frozenset(
    {RunStatus.SKIP_OVERLAP, RunStatus.SKIP_MISSED, RunStatus.SKIP_COALESCED}
    | {RunStatus.SUPERSEDED, RunStatus.REFUSED}
)


@dataclass(frozen=True)
class PlannedRun:
    scheduled_for: datetime
    seeds: list[int]


def plan_backfill(
    campaign: Campaign, *, start: datetime, end: datetime, submitter: Submitter, now: datetime
) -> list[PlannedRun]:
    """The ticks in ``[start, end)`` and the seeds each would render (SpecError if too big)."""
    if end > now:
        raise SpecError([FieldError("end", "a backfill renders past ticks; end is in the future")])
    try:
        ticks = backfill_ticks(
            campaign.schedule,
            campaign.timezone,
            start,
            end,
            max_ticks=submitter.settings.max_bulk_jobs,
        )
    except ValueError as exc:
        raise SpecError([FieldError("end", str(exc))]) from None
    spec = JobSpec.model_validate(campaign.spec)
    cells = len(ticks) * spec.cell_count(submitter.settings.prompt_library)
    if cells > submitter.settings.max_grid_cells * 10:
        raise SpecError([FieldError("end", f"the range renders {cells} images; too many at once")])
    spec_seeds = spec.seed_list()
    return [
        PlannedRun(t, run_seeds(campaign.seed_policy, spec_seeds, t, campaign.timezone))
        for t in ticks
    ]


def backfill(
    session: Session,
    *,
    campaign: Campaign,
    ticks: list[datetime],
    submitter: Submitter,
    now: datetime,
) -> list[RunResult]:
    """Render each tick that has no job yet (every tick starts: overlap allow_all).

    A tick that already rendered (or is rendering, or buffered) is returned as
    ``existing``; a recorded skip or refusal is replaced by a run with a job.
    """
    existing = runs_at(session, campaign_id=campaign.id, ticks=ticks)
    results: list[RunResult] = []
    for tick in ticks:
        found = existing.get(tick)
        if found is None:
            results.append(
                record_tick(
                    session,
                    campaign=campaign,
                    scheduled_for=tick,
                    origin=RunOrigin.BACKFILL,
                    action="start",
                    submitter=submitter,
                    now=now,
                )
            )
            continue
        run, job = found
        if run.status not in _REPLACEABLE:
            results.append(RunResult(run, job, None, existing=True))
            continue
        run.origin = RunOrigin.BACKFILL.value
        job, publication = start_run(
            session, campaign=campaign, run=run, submitter=submitter, now=now
        )
        session.flush()
        results.append(RunResult(run, job, publication))
    return results
