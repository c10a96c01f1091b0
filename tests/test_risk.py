"""The risk model is defined once (chainsync/risk.py): the API scores with it, dbt's fct_ip_risk gets it as
variables, and a changed setting moves both the same way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from api.security.ipfilter import IpFilter
from api.security.risk import RiskEngine
from chainsync.risk import (
    THREAT_LEVELS,
    RiskModel,
    daily_failure_level,
    worst_level,
)
from chainsync.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt_project"
FCT_IP_RISK = DBT_DIR / "models" / "marts" / "operations" / "fct_ip_risk.sql"
ATTACKER = "203.0.113.9"
# (minutes after the first, signal) of one address
SIGNALS = [
    (0, "login_failure"),
    (10, "suspicious_input"),
    (20, "authorization_denied"),
    (25, "login_failure"),
]


def test_dbt_project_defaults_are_the_default_settings_model() -> None:
    """dbt_project.yml's vars are what the dbt asset would pass with the default settings."""
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    expected = RiskModel.from_settings(Settings()).dbt_vars()
    assert RiskModel() == RiskModel.from_settings(Settings())
    assert {k: v for k, v in project["vars"].items() if k.startswith("risk_")} == expected, (
        "dbt_project.yml's risk vars differ from chainsync.risk.RiskModel().dbt_vars(): copy them from it"
    )


def test_fct_ip_risk_holds_no_risk_constant_of_its_own() -> None:
    sql = re.sub(r"'[^']*'", "''", re.sub(r"--[^\n]*", "", FCT_IP_RISK.read_text()))
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", sql))
    # 0.5: a half-life halves; 2: digits of the rounded score; 0: nothing; 1: the regexp's group.
    assert numbers <= {"0", "0.0", "0.5", "1", "2"}, numbers
    for name in (
        "risk_signal_weights",
        "risk_half_life_seconds",
        "risk_level_scores",
        "risk_stuffing_usernames",
    ):
        assert name in FCT_IP_RISK.read_text()


def test_the_dbt_resource_passes_the_settings_model(tmp_path: Path) -> None:
    from pipelines.resources import build_resources

    settings = Settings(data_dir=tmp_path, risk_half_life_minutes=5, risk_block_score=20)  # type: ignore[call-arg]
    passed = json.loads(build_resources(settings)["dbt"].dbt_vars)
    assert passed == RiskModel.from_settings(settings).dbt_vars()
    assert passed["risk_half_life_seconds"] == 300.0
    assert passed["risk_level_scores"] == {"critical": 20.0, "high": 10.0, "elevated": 4.0}


def test_address_levels_and_threat_levels() -> None:
    model = RiskModel()
    assert [model.address_level(s) for s in (0, 1.99, 2, 5, 10)] == [
        "low",
        "low",
        "elevated",
        "high",
        "critical",
    ]
    assert model.address_level(0.5, usernames_failed=5) == "critical"
    assert model.threat_level(critical_events=0, blocks=0, top_score=4.9) == "low"
    assert model.threat_level(critical_events=0, blocks=0, top_score=5) == "elevated"
    assert model.threat_level(critical_events=1, blocks=0, top_score=0) == "high"
    assert model.threat_level(critical_events=0, blocks=10, top_score=0) == "critical"
    assert [daily_failure_level(n) for n in (9, 10, 50, 200)] == ["low", "elevated", "high", "critical"]
    assert worst_level(["low", None, "high", "elevated", "weird"]) == "high"
    assert worst_level([]) == "low" and THREAT_LEVELS[-1] == "critical"


def _api_score(settings: Settings, start: datetime) -> float:
    now = [start]
    risk = RiskEngine(settings, None, IpFilter(settings), clock=lambda: now[0])
    for minutes, signal in SIGNALS:
        now[0] = start + timedelta(minutes=minutes)
        risk.observe(ATTACKER, signal)
    return round(risk.ip_score(ATTACKER), 2)  # at the address's last event, as the mart decays to it


def _mart_score(settings: Settings, start: datetime, tmp_path: Path) -> tuple[float, str]:
    """fct_ip_risk compiled by dbt with the vars the dbt resource passes for ``settings``, run on DuckDB
    over the same signals."""
    from pipelines.resources import build_resources

    warehouse = tmp_path / "warehouse.duckdb"
    target = tmp_path / "target"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "compile",
            "--select",
            "fct_ip_risk",
            "--vars",
            build_resources(settings)["dbt"].dbt_vars,
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
            "--quiet",
        ],
        check=True,
        env={"CHAINSYNC_WAREHOUSE_PATH": str(warehouse), "PATH": str(Path(sys.executable).parent)},
        cwd=tmp_path,
        capture_output=True,
    )
    sql = next(target.glob("compiled/**/fct_ip_risk.sql")).read_text()
    relation = re.search(r'("[^"]+"\.)?("[^"]+")\."fct_security_events"', sql)
    assert relation is not None, sql
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create schema if not exists {relation.group(2)}")
        con.execute(
            f"create table {relation.group(0)} (source_ip varchar, security_kind varchar, "
            "occurred_at timestamp, is_failure boolean, username varchar, detail varchar)"
        )
        for minutes, signal in SIGNALS:
            at = (start + timedelta(minutes=minutes)).replace(tzinfo=None)
            con.execute(
                f"insert into {relation.group(0)} values (?, ?, ?, true, 'mona', null)",
                [ATTACKER, signal, at],
            )
        score, level = con.execute(f"select risk_score, risk_level from ({sql})").fetchone()  # type: ignore[misc]
    return float(score), level


@pytest.mark.slow
def test_a_changed_half_life_moves_the_api_and_the_mart_the_same_way(tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    scores = {}
    for minutes in (30.0, 5.0):
        settings = Settings(data_dir=tmp_path / str(minutes), risk_half_life_minutes=minutes)  # type: ignore[call-arg]
        api = _api_score(settings, start)
        mart, level = _mart_score(settings, start, tmp_path / str(minutes))
        assert mart == pytest.approx(api, abs=0.011), (minutes, api, mart)
        assert level == RiskModel.from_settings(settings).address_level(mart)
        scores[minutes] = mart
    assert scores[5.0] < scores[30.0] - 1  # a shorter half-life forgets the early signals
