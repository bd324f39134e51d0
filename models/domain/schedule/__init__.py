"""Campaign schedules, pure: no database, no clock (the rules: docs/CAMPAIGNS.md).

``instants`` (the times and zones accepted), ``cron`` (the grammar), ``fire_times``
(wall clock and daylight-saving time), ``policies`` (overlap, jitter, pause) and
``plan`` (the scheduler's decision at a tick). Callers pass every time they need,
so tests drive them with frozen datetimes; instants come back aware, in UTC.
"""
