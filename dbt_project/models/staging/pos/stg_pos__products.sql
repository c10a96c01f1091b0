with source as (
    select * from {{ source('pos', 'products') }}
),

renamed as (
    select
        product_id,
        name as product_name,
        category,
        unit_cost_cents,
        price_cents as list_price_cents,
        lead_time_days,
        is_active,
        updated_at
    from source
)

select * from renamed
