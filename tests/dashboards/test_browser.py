"""The real thing: `streamlit run dashboards/app.py` on loopback against a published snapshot and a real API
to log in to; an administrator logs in (password and two-factor code) and opens every page in headless
Chromium, its key elements found, no error box, and a screenshot saved
(``tests/artifacts/screenshots/<page>.png``; ``docs/screenshots/`` for the README when taken on a
generated chain). A manager logs in through a deep link to the Security page, is refused it, sees their
stores only (also in a downloaded CSV) and logs out.

By default the app serves the small hand-made snapshot of ``tests/dashboards/snapshot.py``. To take the
README's screenshots on a generated chain, point ``CHAINSYNC_DASHBOARD_TEST_DATA_DIR`` at a data directory
with a published snapshot (for example the one ``bench/dashboards.py --data-dir`` keeps)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from chainsync.ops_store.users import create_device_key
from chainsync.serving import publish_snapshot
from tests.api.conftest import sale_event
from tests.dashboards.conftest import ADMIN, MANAGER, PASSWORD, LoginApi, start_login_api
from tests.dashboards.snapshot import three_stores
from tests.live_api import stop_api

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed only when they are taken on a generated chain; an ordinary test run
# saves its screenshots under tests/artifacts (git-ignored) and leaves the committed ones alone.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CHAINSYNC_DASHBOARD_TEST_DATA_DIR")
    else ROOT / "tests" / "artifacts" / "screenshots"
)
CHROMIUM = Path(os.environ.get("CHAINSYNC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# url path -> (title, texts that must be on the page)
PAGES: dict[str, tuple[str, list[str]]] = {
    "overview": ("Overview", ["Net sales", "Transactions", "Average basket", "Threat level", "Snapshot age"]),
    "forecast": ("Sales and forecast", ["Units, last 28 days", "By store", "Backtest accuracy and models"]),
    "anomalies": ("Anomalies", ["Anomalies, newest first", "The data behind an anomaly", "Why:"]),
    "inventory": ("Inventory", ["Out of stock", "Median days of cover", "Reorder suggestions"]),
    "insights": ("Insights", ["Recommendations"]),
    "security": (
        "Security",
        ["Threat level", "Riskiest IPs", "Riskiest users", "Blocks in force", "Unusual data access"],
    ),
    "sync": ("Sync", ["Live device status", "Terminals", "Worst clock skew (s)"]),
    "system": ("System", ["Pipeline runs", "Asset freshness", "Tables published"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def login_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginApi]:
    """The API the analysts log in to (its own ops store with the test users), for this module."""
    api, proc = start_login_api(
        tmp_path_factory.mktemp("browser-api"),
        CHAINSYNC_RATE_LIMIT_LOGIN="1000/minute",
        CHAINSYNC_IP_ALLOWLIST="127.0.0.1/32",
    )
    try:
        yield api
    finally:
        stop_api(proc)  # type: ignore[arg-type]
        api.engine.dispose()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory the dashboards read: the test snapshot, or the one the environment names."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the CI entry point does)")
    given = os.environ.get("CHAINSYNC_DASHBOARD_TEST_DATA_DIR")
    if given:
        return Path(given).resolve()
    path = tmp_path_factory.mktemp("dashboards") / "data"
    path.mkdir()
    publish_snapshot(
        path / "serving",
        three_stores(),  # S003 is the store the manager must never see
        run_id="browser-test",
        extra={"pipeline": {"events_seq": 1234}},
    )
    return path


@contextmanager
def serve_dashboards(data_dir: Path, api: str, log_path: Path, **extra_env: str) -> Iterator[str]:
    """`streamlit run dashboards/app.py` on a free loopback port, logging in to ``api``; its URL once it
    answers. Stopped on exit."""
    port = _free_port()
    env = {
        **os.environ,
        "CHAINSYNC_DATA_DIR": str(data_dir),
        "CHAINSYNC_DASHBOARD_API_URL": api,
        "CHAINSYNC_DASHBOARD_API_TIMEOUT_SECONDS": "2",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        **extra_env,
    }
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "dashboards" / "app.py"),
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--server.headless=true",
            "--server.fileWatcherType=none",
            "--global.developmentMode=false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("streamlit did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def dashboard_url(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory, login_stack: LoginApi
) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with serve_dashboards(data_dir, login_stack.base, log_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the script run is over (the app's status widget stops saying "Running")."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )
    page.wait_for_timeout(500)  # charts draw after the run ends


def _save_small(png: bytes, path: Path) -> None:
    """Keep the committed screenshots small: a 256-colour palette is plenty for a dashboard."""
    import io

    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(path, optimize=True)


def _log_in(page, username: str, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Fill the login form (and the two-factor step when ``code`` is given) and wait for the app."""
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    if code is not None:
        page.get_by_role("textbox", name="Two-factor code").fill(code)
        page.get_by_role("button", name="Log in").click()
    page.locator('[data-testid="stSidebarNav"]').wait_for(timeout=30_000)
    _settle(page)


def _open(page, title: str) -> None:  # type: ignore[no-untyped-def]
    """Switch page with the sidebar navigation (the session, and its login, stay: no reload)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=30_000)
    _settle(page)


@pytest.fixture(scope="module")
def admin_page(dashboard_url: str, browser, login_stack: LoginApi) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """One administrator's browser session for the page tests: a TOTP code is good for one login only."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(dashboard_url, wait_until="domcontentloaded")
    page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
    _log_in(page, ADMIN, login_stack.code(ADMIN, steps_ahead=1))
    yield page
    context.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_page_opens_with_its_elements_and_no_error(admin_page, path: str) -> None:  # type: ignore[no-untyped-def]
    title, texts = PAGES[path]
    page = admin_page
    _open(page, title)
    main = page.locator('[data-testid="stMain"]')
    for text in texts:  # elements stream in after the run: wait for each
        main.get_by_text(text, exact=False).first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=30_000)
    page.wait_for_timeout(800)  # let the charts draw
    assert page.locator('[data-testid="stException"]').count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _save_small(page.screenshot(full_page=False), SCREENSHOTS / f"{path}.png")
    # The shared filters are in the sidebar of every page.
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Store" in sidebar and "Period" in sidebar


def test_store_filter_follows_the_analyst_across_pages(admin_page) -> None:  # type: ignore[no-untyped-def]
    page = admin_page
    _open(page, "Overview")
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    option = page.get_by_role("option").nth(2)  # All stores, the first store, the second store
    chosen = option.inner_text().strip()
    option.click()
    _settle(page)
    _open(page, "Sync")
    store_box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    assert chosen in (store_box.text_content() or "") + " ".join(
        store_box.locator("input").evaluate_all("els => els.map(e => e.value)")
    )
    if not os.environ.get("CHAINSYNC_DASHBOARD_TEST_DATA_DIR"):
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Terminals").first
        assert metric.inner_text().split()[-1] == "2"  # S002's two terminals, not the chain's six
    assert page.locator('[data-testid="stException"]').count() == 0


@pytest.mark.skipif(
    bool(os.environ.get("CHAINSYNC_DASHBOARD_TEST_DATA_DIR")), reason="checks the stores of the test snapshot"
)
def test_a_manager_logs_in_sees_their_stores_only_and_logs_out(dashboard_url: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    try:
        # A deep link to an administrators' page: the login first, then the page's answer — a refusal.
        page.goto(f"{dashboard_url}/security", wait_until="domcontentloaded")
        page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
        assert "/security" in page.url
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        _save_small(page.screenshot(full_page=False), SCREENSHOTS / "login.png")
        _log_in(page, MANAGER)
        main = page.locator('[data-testid="stMain"]')
        main.get_by_text("The Security page is for administrators.").wait_for(timeout=30_000)
        assert main.get_by_text("Riskiest IPs").count() == 0
        assert main.get_by_text("Blocks in force").count() == 0
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Overview" in nav and "Security" not in nav and "System" not in nav
        page.goto(f"{dashboard_url}/system", wait_until="domcontentloaded")  # a reload: a new session
        page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
        _log_in(page, MANAGER)
        main.get_by_text("The System page is for administrators.").wait_for(timeout=30_000)

        # Their stores only: the store choices, the drill table and its CSV download.
        _open(page, "Sales and forecast")
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
        assert options == ["All stores", "S001 — North", "S002 — South"]
        page.keyboard.press("Escape")
        with page.expect_download(timeout=30_000) as download:
            main.get_by_role("button", name="Download sales by store (CSV)").click()
        csv = Path(download.value.path()).read_text()
        assert csv.splitlines()[0].startswith("store_id,")
        assert sorted(line.split(",")[0] for line in csv.splitlines()[1:]) == ["S001", "S002"]
        assert "S003" not in page.locator('[data-testid="stMain"]').inner_text()
        assert page.locator('[data-testid="stException"]').count() == 0

        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Log out").click()
        page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
        main.get_by_text("You have logged out.").wait_for(timeout=30_000)
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    finally:
        context.close()


def test_live_figures_refresh_themselves(  # type: ignore[no-untyped-def]
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory, login_stack: LoginApi, browser
) -> None:
    """With CHAINSYNC_DASHBOARD_REFRESH_SECONDS set, a sale made after the page opened appears in the live
    figures without anyone touching the page."""
    log_path = tmp_path_factory.mktemp("streamlit-refresh") / "streamlit.log"
    with serve_dashboards(
        data_dir, login_stack.base, log_path, CHAINSYNC_DASHBOARD_REFRESH_SECONDS="2"
    ) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
            _log_in(page, MANAGER)
            live = page.locator('[data-testid="stMetric"]').filter(has_text="Transactions today (live)")
            live.wait_for(timeout=30_000)
            before = int(live.inner_text().split()[-1].replace(",", ""))
            key = create_device_key(login_stack.engine, "S001", "POS-01")  # sale_event's terminal
            sold = sale_event(occurred_at=datetime.now(UTC).isoformat(), transaction_id="T-REFRESH-1")
            posted = httpx.post(f"{login_stack.base}/api/events/sales", json=sold, headers={"X-API-Key": key})
            assert posted.status_code == 201, posted.text
            # No click, no reload: the fragment reruns on its own (live answers are cached 5 s at most).
            page.wait_for_function(
                """([label, want]) => [...document.querySelectorAll('[data-testid="stMetric"]')]
                    .some(m => m.innerText.includes(label) && m.innerText.trim().endsWith(want))""",
                arg=["Transactions today (live)", str(before + 1)],
                timeout=30_000,
            )
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            context.close()
