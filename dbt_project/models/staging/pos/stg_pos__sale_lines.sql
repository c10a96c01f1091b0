with source as (
    select * from {{ source('pos', 'sale_lines') }}
),

renamed as (
    select
        event_id,
        line_no,
        transaction_id,
        kind as sale_kind,
        cashier_id,
        payment_type,
        store_id,
        device_id,
        product_id,
        quantity,
        unit_price_cents,
        discount_cents,
        occurred_at,
        received_at,
        seq
    from source
)

select * from renamed
