{{ config(materialized='view') }}

-- Current on-hand per store x product: the published columns of int_stock_levels, the incremental table
-- that keeps them (see there for the rule and what a run recomputes).

select
    stock_level_id,
    store_id,
    product_id,
    last_counted_level,
    last_counted_at,
    movement_units_since_count,
    units_sold_since_count,
    on_hand_units,
    last_sale_at
from {{ ref('int_stock_levels') }}
