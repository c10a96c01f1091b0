with source as (
    select * from {{ source('pos', 'security_events') }}
),

renamed as (
    select
        event_id,
        seq,
        store_id,
        device_id,
        payload ->> '$.kind' as security_kind,
        payload ->> '$.outcome' as outcome,
        payload ->> '$.username' as username,
        payload ->> '$.source_ip' as source_ip,
        payload ->> '$.user_agent' as user_agent,
        payload ->> '$.detail' as detail,
        occurred_at,
        received_at
    from source
)

select * from renamed
