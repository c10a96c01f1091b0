with stores as (
    select * from {{ ref('stg_pos__stores') }}
)

select
    store_id,
    store_name,
    region,
    city,
    opened_on,
    timezone
from stores
