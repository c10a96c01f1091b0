with source as (
    select * from {{ source('pos', 'sync_events') }}
),

renamed as (
    select
        event_id,
        seq,
        store_id,
        device_id,
        payload ->> '$.session_id' as session_id,
        cast(payload ->> '$.offline_since' as timestamptz) as offline_since,
        cast(payload ->> '$.items_received' as bigint) as items_received,
        cast(payload ->> '$.items_applied' as bigint) as items_applied,
        cast(payload ->> '$.items_duplicate' as bigint) as items_duplicate,
        cast(payload ->> '$.items_rejected' as bigint) as items_rejected,
        cast(payload ->> '$.items_conflict' as bigint) as items_conflict,
        cast(payload ->> '$.duration_ms' as bigint) as duration_ms,
        cast(payload ->> '$.clock_skew_seconds' as bigint) as clock_skew_seconds,
        occurred_at,
        received_at
    from source
)

select * from renamed
