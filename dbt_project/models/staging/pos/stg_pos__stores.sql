with source as (
    select * from {{ source('pos', 'stores') }}
),

renamed as (
    select
        store_id,
        name as store_name,
        region,
        city,
        try_cast(opened_on as date) as opened_on,
        timezone,
        updated_at
    from source
)

select * from renamed
