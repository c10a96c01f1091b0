with source as (
    select * from {{ source('ops', 'data_access') }}
),

renamed as (
    select
        cast(seq as bigint) as audit_seq,
        cast(occurred_at as timestamp) as occurred_at,
        actor as principal,
        -- Terminals act as "device:<store>/<device>" (api/deps.py); everyone else is a user.
        case when role = 'device' or actor like 'device:%' then 'device' else 'user' end as principal_kind,
        role,
        source_ip,
        method,
        route,
        method || ' ' || route as endpoint,
        store_id,
        outcome
    from source
    where actor is not null
)

select * from renamed
