with products as (
    select * from {{ ref('stg_pos__products') }}
)

select
    product_id,
    product_name,
    category,
    unit_cost_cents,
    list_price_cents,
    list_price_cents - unit_cost_cents as unit_margin_cents,
    lead_time_days,
    is_active
from products
