"""/v1/campaigns: scheduled grids, their runs, run-now and backfills."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response
from pydantic import ValidationError

from api.auth import TenantId
from api.campaign_views import (
    BackfillOut,
    BackfillRunOut,
    CampaignOut,
    CampaignPage,
    RunOut,
    RunPage,
    campaign_out,
    run_out,
)
from api.deps import DbSession, Limit, State, owned_or_404
from api.errors import validation_fields
from api.routes.jobs import JsonBody
from models.db.campaign_tables import Campaign
from models.db.campaigns import (
    campaign_input,
    create_campaign,
    delete_campaign,
    get_campaign,
    list_campaigns,
    list_runs,
    lock_campaign,
    update_campaign,
)
from models.db.tables import utcnow
from models.domain.campaign_spec import (
    BackfillIn,
    CampaignIn,
    CampaignPatch,
    TriggerIn,
    check_campaign,
)
from models.domain.spec import SpecError
from models.service.backfill import backfill, plan_backfill
from models.service.campaign_runs import RunResult, trigger

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


def tenant_campaign(campaign_id: str, tenant: TenantId, session: DbSession) -> Campaign:
    """A campaign of the caller's tenant, or 404."""
    return owned_or_404(
        "campaign",
        campaign_id,
        lambda i: get_campaign(session, tenant_id=tenant, campaign_id=i),
    )


TenantCampaign = Annotated[Campaign, Depends(tenant_campaign)]


def _publish(state: State, results: list[RunResult]) -> None:
    for result in results:
        if result.publication is not None:
            state.publisher.publish(
                model=result.publication.model, shard_ids=result.publication.shard_ids
            )


@router.post("", status_code=201, dependencies=[JsonBody])
def create(
    body: CampaignIn, state: State, session: DbSession, tenant: TenantId, response: Response
) -> CampaignOut:
    check_campaign(body, state.settings.limits, state.submitter.counter_for(body.spec))
    policy = state.submitter.policy(session, tenant)  # its runs are refused otherwise
    state.submitter.check(body.spec, prefix="spec.", policy=policy)
    campaign = create_campaign(session, tenant_id=tenant, data=body, now=utcnow())
    session.commit()
    response.headers["Location"] = f"/v1/campaigns/{campaign.id}"
    return campaign_out(campaign)


@router.get("")
def get_campaigns(
    session: DbSession, tenant: TenantId, cursor: str | None = None, limit: Limit = 50
) -> CampaignPage:
    page = list_campaigns(session, tenant_id=tenant, cursor=cursor, limit=limit)
    return CampaignPage(items=[campaign_out(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/{campaign_id}")
def get_one(campaign: TenantCampaign) -> CampaignOut:
    return campaign_out(campaign)


@router.patch("/{campaign_id}", dependencies=[JsonBody])
def patch(
    body: CampaignPatch, campaign: TenantCampaign, state: State, session: DbSession
) -> CampaignOut:
    """Fields given replace the campaign's; ``{"enabled": false}`` pauses, ``true`` resumes."""
    lock_campaign(session, campaign)
    try:
        data = body.apply_to(campaign_input(campaign))
    except ValidationError as exc:
        raise SpecError(validation_fields([dict(e) for e in exc.errors()])) from None
    check_campaign(data, state.settings.limits, state.submitter.counter_for(data.spec))
    policy = state.submitter.policy(session, campaign.tenant_id)
    state.submitter.check(data.spec, prefix="spec.", policy=policy)
    update_campaign(campaign, data=data, given=set(body.model_fields_set), now=utcnow())
    session.commit()
    return campaign_out(campaign)


@router.delete("/{campaign_id}", status_code=204)
def delete(campaign: TenantCampaign, session: DbSession) -> Response:
    """The campaign and its run history go; the jobs it made stay."""
    lock_campaign(session, campaign)
    delete_campaign(session, campaign)
    session.commit()
    return Response(status_code=204)


@router.post("/{campaign_id}/trigger", status_code=201)
def run_now(
    campaign: TenantCampaign,
    state: State,
    session: DbSession,
    body: Annotated[TriggerIn | None, Body()] = None,
) -> RunOut:
    """One run at this instant, paused or not, through the overlap policy (or ``overlap``)."""
    lock_campaign(session, campaign)
    result = trigger(
        session,
        campaign=campaign,
        overlap=body.overlap if body else None,
        submitter=state.submitter,
        now=utcnow(),
    )
    session.commit()
    _publish(state, [result])
    return run_out(result.run, result.job)


@router.get("/{campaign_id}/runs")
def get_runs(
    campaign: TenantCampaign, session: DbSession, cursor: str | None = None, limit: Limit = 50
) -> RunPage:
    page = list_runs(session, campaign_id=campaign.id, cursor=cursor, limit=limit)
    return RunPage(
        items=[run_out(run, job) for run, job in page.items], next_cursor=page.next_cursor
    )


@router.post("/{campaign_id}/backfill", dependencies=[JsonBody])
def run_backfill(
    body: BackfillIn, campaign: TenantCampaign, state: State, session: DbSession
) -> BackfillOut:
    """Render the ticks of ``[start, end)`` that have no job yet (``dry_run``: only list them)."""
    now = utcnow()
    planned = plan_backfill(
        campaign, start=body.start, end=body.end, submitter=state.submitter, now=now
    )
    if body.dry_run:
        return BackfillOut(
            dry_run=True,
            items=[
                BackfillRunOut(
                    scheduled_for=p.scheduled_for, seeds=p.seeds, existing=False, run=None
                )
                for p in planned
            ],
        )
    lock_campaign(session, campaign)
    results = backfill(
        session,
        campaign=campaign,
        ticks=[p.scheduled_for for p in planned],
        submitter=state.submitter,
        now=now,
    )
    session.commit()
    _publish(state, results)
    return BackfillOut(
        dry_run=False,
        items=[
            BackfillRunOut(
                scheduled_for=r.run.scheduled_for,
                seeds=list(r.job.grid["seeds"]) if r.job is not None else None,
                existing=r.existing,
                run=run_out(r.run, r.job),
            )
            for r in results
        ],
    )
