with source as (
    select * from {{ source('pos', 'inventory_events') }}
),

renamed as (
    select
        event_id,
        seq,
        store_id,
        device_id,
        payload ->> '$.product_id' as product_id,
        payload ->> '$.kind' as movement_kind,
        cast(payload ->> '$.quantity_delta' as bigint) as quantity_delta,
        cast(payload ->> '$.counted_level' as bigint) as counted_level,
        occurred_at,
        received_at
    from source
)

select * from renamed
