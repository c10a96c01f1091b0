-- Hourly API performance per endpoint (method + route template), all instances together.
with minutes as (
    select * from {{ ref('stg_ops__request_stats') }}
),

per_instance as (
    select
        date_trunc('hour', minute_start) as hour_start,
        method,
        route,
        endpoint,
        instance,
        sum(requests) as requests,
        sum(errors_4xx) as errors_4xx,
        sum(errors_5xx) as errors_5xx,
        sum(latency_ms_sum) as latency_ms_sum,
        max(latency_ms_max) as latency_ms_max,
        -- Percentiles do not add up: an instance's hourly p50/p95 is the request-weighted mean of its minutes'.
        sum(latency_ms_p50 * requests) / sum(requests) as latency_ms_p50,
        sum(latency_ms_p95 * requests) / sum(requests) as latency_ms_p95
    from minutes
    where requests > 0
    group by all
)

select
    endpoint || ' @ ' || strftime(hour_start, '%Y-%m-%d %H:00') as endpoint_hour,
    hour_start,
    method,
    route,
    endpoint,
    count(*) as instances,
    sum(requests) as requests,
    sum(errors_4xx) as errors_4xx,
    sum(errors_5xx) as errors_5xx,
    sum(errors_4xx) / sum(requests) as error_rate_4xx,
    sum(errors_5xx) / sum(requests) as error_rate_5xx,
    sum(latency_ms_sum) / sum(requests) as latency_ms_mean,
    sum(latency_ms_p50 * requests) / sum(requests) as latency_ms_p50,
    -- Request-weighted like the minutes: a max over instances would let a quiet one (a single cold 2 s
    -- request) set the hour's p95 although the minimum-traffic rule counts all instances' requests.
    sum(latency_ms_p95 * requests) / sum(requests) as latency_ms_p95,
    max(latency_ms_max) as latency_ms_max
from per_instance
group by all
order by hour_start, endpoint
