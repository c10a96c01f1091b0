{{
    config(
        materialized='incremental',
        unique_key=['store_id', 'product_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

-- Current on-hand per store x product (published by the view fct_stock_levels): the last shelf count, plus
-- stock movements since it, minus units sold since it. Refunded goods go back to the supplier and voided
-- goods never left the shelf, so neither moves stock. Pairs never counted start from zero.
-- Incremental on (store, product): a run recomputes, from their whole history, only the pairs with a
-- movement or a sale line newer than the last build (max_movement_seq / max_sale_seq, per source, since
-- the two sources land on their own watermarks); every other pair's row cannot have changed.

-- Not materialized: each is read twice below (the touched pairs, then their history), and a materialized CTE
-- would copy the whole history before the filters reach the scan.
with all_movements as not materialized (
    select * from {{ ref('stg_pos__inventory_movements') }}
),

all_sale_lines as not materialized (
    select * from {{ ref('stg_pos__sale_lines') }}
),

{% if is_incremental() %}
touched as (
    -- coalesce guards an empty {{ this }} (max() of no rows is null)
    select store_id, product_id from all_movements
    where seq > (select coalesce(max(max_movement_seq), 0) from {{ this }})
    union
    select store_id, product_id from all_sale_lines
    where seq > (select coalesce(max(max_sale_seq), 0) from {{ this }})
),

movements as (
    select all_movements.* from all_movements semi join touched using (store_id, product_id)
),

sale_lines as (
    select all_sale_lines.* from all_sale_lines semi join touched using (store_id, product_id)
),
{% else %}
movements as (
    select * from all_movements
),

sale_lines as (
    select * from all_sale_lines
),
{% endif %}

last_counts as (
    select store_id, product_id, counted_level, occurred_at as counted_at
    from movements
    where movement_kind = 'count'
    qualify row_number() over (partition by store_id, product_id order by occurred_at desc, seq desc) = 1
),

movements_since as (
    select m.store_id, m.product_id, sum(m.quantity_delta) as movement_units
    from movements as m
    left join last_counts as c using (store_id, product_id)
    where m.movement_kind != 'count' and (c.counted_at is null or m.occurred_at > c.counted_at)
    group by all
),

sales_since as (
    select
        l.store_id,
        l.product_id,
        sum(case when l.sale_kind = 'sale' then l.quantity else 0 end) as units_sold,
        max(l.occurred_at) as last_sale_at
    from sale_lines as l
    left join last_counts as c using (store_id, product_id)
    where c.counted_at is null or l.occurred_at > c.counted_at
    group by all
),

movement_seqs as (
    select store_id, product_id, max(seq) as max_movement_seq from movements group by all
),

sale_seqs as (
    select store_id, product_id, max(seq) as max_sale_seq from sale_lines group by all
),

pairs as (
    select store_id, product_id from last_counts
    union
    select store_id, product_id from movements_since
    union
    select store_id, product_id from sales_since
)

select
    pairs.store_id || '|' || pairs.product_id as stock_level_id,
    pairs.store_id,
    pairs.product_id,
    coalesce(c.counted_level, 0) as last_counted_level,
    c.counted_at as last_counted_at,
    cast(coalesce(m.movement_units, 0) as bigint) as movement_units_since_count,
    cast(coalesce(s.units_sold, 0) as bigint) as units_sold_since_count,
    cast(coalesce(c.counted_level, 0) + coalesce(m.movement_units, 0) - coalesce(s.units_sold, 0) as bigint)
        as on_hand_units,
    s.last_sale_at,
    cast(coalesce(ms.max_movement_seq, 0) as bigint) as max_movement_seq,
    cast(coalesce(ss.max_sale_seq, 0) as bigint) as max_sale_seq
from pairs
left join last_counts as c using (store_id, product_id)
left join movements_since as m using (store_id, product_id)
left join sales_since as s using (store_id, product_id)
left join movement_seqs as ms using (store_id, product_id)
left join sale_seqs as ss using (store_id, product_id)
