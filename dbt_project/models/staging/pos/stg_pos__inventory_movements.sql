-- A table, not a view like the other staging models: the fields live in the JSON payload, and the stock
-- levels, the shrinkage features and the planner's touched pairs read every movement on every run, so the
-- payload of each event is parsed once, when it lands (appended by seq), not once per reader per run.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail'
    )
}}

with source as (
    select * from {{ source('pos', 'inventory_events') }}
    {% if is_incremental() %}
    -- coalesce guards an empty {{ this }} (max() of no rows is null)
    where seq > (select coalesce(max(seq), 0) from {{ this }})
    {% endif %}
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
