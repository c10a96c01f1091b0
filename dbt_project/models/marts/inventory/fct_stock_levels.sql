-- Current on-hand per store x product: the last shelf count, plus stock movements since it, minus units
-- sold since it. Refunded goods go back to the supplier and voided goods never left the shelf, so neither
-- moves stock. Pairs never counted start from zero.

with movements as (
    select * from {{ ref('stg_pos__inventory_movements') }}
),

sale_lines as (
    select * from {{ ref('stg_pos__sale_lines') }}
),

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
    s.last_sale_at
from pairs
left join last_counts as c using (store_id, product_id)
left join movements_since as m using (store_id, product_id)
left join sales_since as s using (store_id, product_id)
