with sync_sessions as (
    select * from {{ ref('stg_pos__sync_sessions') }}
)

select
    event_id,
    session_id,
    store_id,
    device_id,
    occurred_at as synced_at,
    offline_since,
    date_diff('second', offline_since, cast(occurred_at as timestamptz)) as offline_seconds,
    items_received,
    items_applied,
    items_duplicate,
    items_rejected,
    items_conflict,
    duration_ms,
    clock_skew_seconds,
    received_at
from sync_sessions
