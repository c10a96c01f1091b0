with source as (
    select * from {{ source('ops', 'request_stats') }}
),

renamed as (
    select
        cast(bucket_start as timestamp) as minute_start,
        instance,
        method,
        route,
        method || ' ' || route as endpoint,
        cast(requests as bigint) as requests,
        cast(errors_4xx as bigint) as errors_4xx,
        cast(errors_5xx as bigint) as errors_5xx,
        cast(latency_ms_sum as double) as latency_ms_sum,
        cast(latency_ms_max as double) as latency_ms_max,
        cast(latency_ms_p50 as double) as latency_ms_p50,
        cast(latency_ms_p95 as double) as latency_ms_p95
    from source
)

select * from renamed
