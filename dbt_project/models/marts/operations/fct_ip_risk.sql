-- One row per client address seen in security events: what it did, and a risk score built like the API's
-- (the same weights, halving every half-life before the address's last event), so the dashboards and the
-- security anomalies can rank addresses without the API's in-memory state. The risk model is the API's
-- (chainsync/risk.py), handed over as variables: this model holds no constant of its own.
{%- set weights = var('risk_signal_weights') %}
{%- set levels = var('risk_level_scores') %}
with security_events as (
    select * from {{ ref('fct_security_events') }}
    where source_ip is not null
),

weighted as (
    select
        *,
        case security_kind
            {%- for kind, weight in weights.items() %}
            when '{{ kind }}' then {{ weight }}
            {%- endfor %}
            else 0.0
        end as signal_weight,
        max(occurred_at) over (partition by source_ip) as last_seen_at,
        try_cast(regexp_extract(detail, 'risk_score=([0-9.]+)', 1) as double) as recorded_risk_score
    from security_events
),

per_ip as (
    select
        source_ip,
        count(*) as events,
        count(*) filter (where is_failure) as failures,
        count(*) filter (where security_kind = 'login_failure') as login_failures,
        count(*) filter (where security_kind = 'login_success') as login_successes,
        count(distinct username) filter (where security_kind = 'login_failure') as distinct_usernames_failed,
        count(*) filter (where security_kind = 'authorization_denied') as authorization_denials,
        count(*) filter (where security_kind = 'rate_limited') as rate_limited,
        count(*) filter (where security_kind = 'ip_blocked') as blocked_requests,
        count(*) filter (where security_kind = 'suspicious_input') as suspicious_inputs,
        min(occurred_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(
            signal_weight
            * power(0.5, date_diff('second', occurred_at, last_seen_at) / {{ var('risk_half_life_seconds') }})
        ) as risk_score,
        max(recorded_risk_score) as max_recorded_risk_score
    from weighted
    group by source_ip
)

select
    source_ip,
    events,
    failures,
    login_failures,
    login_successes,
    distinct_usernames_failed,
    authorization_denials,
    rate_limited,
    blocked_requests,
    suspicious_inputs,
    first_seen_at,
    last_seen_at,
    round(risk_score, 2) as risk_score,
    max_recorded_risk_score,
    distinct_usernames_failed >= {{ var('risk_stuffing_usernames') }} as is_credential_stuffing,
    case
        when greatest(risk_score, coalesce(max_recorded_risk_score, 0)) >= {{ levels['critical'] }}
            or distinct_usernames_failed >= {{ var('risk_stuffing_usernames') }}
            then 'critical'
        when greatest(risk_score, coalesce(max_recorded_risk_score, 0)) >= {{ levels['high'] }} then 'high'
        when greatest(risk_score, coalesce(max_recorded_risk_score, 0)) >= {{ levels['elevated'] }} then 'elevated'
        else 'low'
    end as risk_level
from per_ip
