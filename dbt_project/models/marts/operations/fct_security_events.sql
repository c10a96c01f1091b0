with security_events as (
    select * from {{ ref('stg_pos__security_events') }}
)

select
    event_id,
    store_id,
    device_id,
    security_kind,
    outcome,
    outcome != 'success' as is_failure,
    username,
    source_ip,
    detail,
    occurred_at,
    cast(occurred_at as date) as event_date,
    received_at
from security_events
