"""The coordinator's web UI and Prometheus metrics, driven in a real headless browser (Debian's
chromium through its chromedriver, with selenium): a `tally local` cluster with a token and
`--http-bind`, logged in through the UI's form; pages that follow a running job without
reloading; and the UI served over HTTPS by a cluster with TLS."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import tempfile
import threading
import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import tally_client

from conftest import TPCH_TABLES, free_port, running_cluster

# Naive planning hash-shuffles both join inputs and the aggregation: 4 stages, every arrow of
# the graph carrying bytes.
REPORT = (
    "SELECT o_orderpriority, count(*) AS orders, sum(l_quantity) AS quantity "
    "FROM orders JOIN lineitem ON o_orderkey = l_orderkey GROUP BY o_orderpriority"
)
SLOW = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_orderkey < b.l_orderkey"


@pytest.fixture(scope="module")
def ui_cluster(tmp_path_factory, tpch_data):
    workdir = tmp_path_factory.mktemp("tally-ui")
    port = free_port()
    tables = {table: tpch_data / table for table in TPCH_TABLES}
    with running_cluster(workdir, tables, ["--http-bind", f"127.0.0.1:{port}"]) as cluster:
        cluster.http = f"http://127.0.0.1:{port}"
        yield cluster


def get(cluster, url: str, token: str | None = "cluster") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {cluster.token if token == 'cluster' else token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def api(cluster, path: str):
    status, body = get(cluster, cluster.http + path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def browser(ui_cluster):
    """Headless chromium, logged in through the UI's form with the cluster token."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1800", f"--user-data-dir={tempfile.mkdtemp(prefix='tally-chromium-')}"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        driver.get(ui_cluster.http + "/")
        # Without the token the UI asks for it; a wrong one is refused.
        driver.find_element(By.ID, "token").send_keys("not-the-cluster-token")
        driver.find_element(By.ID, "log-in").click()
        # The refusal is a new page: wait for it, or the next lookup may find the old form.
        WebDriverWait(driver, 10).until(lambda d: "wrong cluster token" in d.page_source)
        driver.find_element(By.ID, "token").send_keys(ui_cluster.token)
        driver.find_element(By.ID, "log-in").click()
        WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.jobs")))
        yield driver
    finally:
        driver.quit()


def run_report(cluster, workdir: Path) -> dict:
    """Runs REPORT with the naive planner through the CLI; its --metrics-json figures."""
    metrics_path = workdir / "report-metrics.json"
    cluster.tally("sql", "-e", REPORT, "--set", "tally.planner=naive", "--format", "csv",
                  "--metrics-json", str(metrics_path))
    return json.loads(metrics_path.read_text())


def test_the_job_page_draws_the_stage_graph_with_each_arrow_carrying_the_jobs_shuffle_bytes(ui_cluster, browser):
    metrics = run_report(ui_cluster, ui_cluster.workdir)
    stages = {stage["stage_id"]: stage for stage in metrics["stages"]}
    assert len(stages) >= 3, metrics
    job_id = metrics["job_id"]

    browser.get(ui_cluster.http + "/")
    link = WebDriverWait(browser, 10).until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, f"#job-{job_id} a")))
    link.click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#dag svg")))

    # The arrows as drawn: one per stage read, and the final stage's to the client.
    arrows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#dag g.edge')).map(g => "
        "[g.dataset.from, g.dataset.to, g.dataset.bytes]);")
    expected = {(str(reader), str(read)) for read in stages for reader in stages if read in stages[reader]["input_stages"]}
    drawn = {(to, frm) for frm, to, _ in arrows if to != "client"}
    assert drawn == expected, (arrows, metrics)
    # The labels people read: "stage 1 → 3", then "12,345 B (12.1 KiB)", then the rows.
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('#dag svg text')).map(t => "
        "Array.from(t.querySelectorAll('tspan')).map(s => s.textContent));")
    shown = {}
    for lines in labels:
        head = re.fullmatch(r"stage (\d+) → (\d+|client)", lines[0]) if lines else None
        if head:
            shown[(int(head.group(1)), head.group(2))] = int(lines[1].split(" B")[0].replace(",", ""))
    for stage_id, stage in stages.items():
        readers = [r for r in stages if stage_id in stages[r]["input_stages"]]
        for reader in readers:
            assert shown[(stage_id, str(reader))] == stage["shuffle_bytes"], (shown, metrics)
    assert metrics["shuffle_bytes"] > 0, metrics
    final = [s for s in stages if not any(s in stages[r]["input_stages"] for r in stages)]
    assert shown[(final[0], "client")] == metrics["result_bytes"], (shown, metrics)
    # The page's total equals the job's.
    total = browser.find_element(By.ID, "shuffle-bytes").get_attribute("data-bytes")
    assert int(total) == metrics["shuffle_bytes"]

    screenshot = Path(os.environ.get("TALLY_UI_SCREENSHOT") or ui_cluster.workdir / "job-page.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000


def start_slow_job(ui_cluster) -> tuple[threading.Thread, dict, str]:
    """SLOW running in a thread through the Python client; the thread, its outcome and the
    job's id once it runs."""
    outcome = {}

    def run():
        with tally_client.connect(ui_cluster.url, token=ui_cluster.token) as tally:
            try:
                tally.sql(SLOW)
                outcome["finished"] = True
            except tally_client.TallyError as error:
                outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        running = [job for job in api(ui_cluster, "/api/jobs") if job["state"] == "RUNNING" and "a.l_orderkey" in job["sql"]]
        if running:
            break
        assert time.monotonic() < deadline, "the slow job never ran"
        time.sleep(0.2)
    return thread, outcome, running[0]["job_id"]


def test_the_cancel_button_cancels_a_running_job(ui_cluster, browser):
    thread, outcome, job_id = start_slow_job(ui_cluster)

    browser.get(f"{ui_cluster.http}/jobs/{job_id}")
    WebDriverWait(browser, 10).until(EC.element_to_be_clickable((By.ID, f"cancel-{job_id}"))).click()
    # The page comes back with the job cancelled and no button left.
    WebDriverWait(browser, 15).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "h1 .state"), "CANCELLED"))
    assert not browser.find_elements(By.ID, f"cancel-{job_id}")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" in outcome, outcome
    assert api(ui_cluster, f"/api/jobs/{job_id}")["state"] == "CANCELLED"
    with tally_client.connect(ui_cluster.url, token=ui_cluster.token) as tally:
        assert tally.metrics(job_id).state == "CANCELLED"


def test_a_job_page_follows_the_running_job_without_reloading(ui_cluster, browser):
    thread, outcome, job_id = start_slow_job(ui_cluster)
    browser.get(f"{ui_cluster.http}/jobs/{job_id}")
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#dag svg")))
    # A reload would forget this; the page's script only swaps its live part.
    browser.execute_script("window.tallyMarker = 'the same page';")

    def running_task_times():
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('tr.task')).filter(r => "
            "r.querySelector('.state.running')).map(r => Number(r.dataset.elapsedMs));")

    # A running task's time, as the page shows it, moves while the job runs.
    WebDriverWait(browser, 10).until(lambda _: running_task_times())
    first = max(running_task_times())
    WebDriverWait(browser, 10).until(lambda _: running_task_times() and max(running_task_times()) > first + 500)

    # Cancelled elsewhere (the Python client), the page follows on its own.
    with tally_client.connect(ui_cluster.url, token=ui_cluster.token) as tally:
        tally.cancel(job_id)
    WebDriverWait(browser, 15).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "h1 .state"), "CANCELLED"))
    assert browser.execute_script("return window.tallyMarker;") == "the same page"
    assert browser.find_element(By.ID, "live").get_attribute("data-live") == "0"
    assert not browser.find_elements(By.ID, f"cancel-{job_id}")
    thread.join(timeout=30)
    assert "error" in outcome, outcome


def test_the_workers_page_shows_memory_and_spool_as_the_heartbeats_report(ui_cluster, browser):
    run_report(ui_cluster, ui_cluster.workdir)
    browser.get(f"{ui_cluster.http}/workers")
    # The page refreshes itself: the spool the report left shows up within heartbeats.
    WebDriverWait(browser, 15).until(lambda b: b.execute_script(
        "return Array.from(document.querySelectorAll('td.spool')).reduce((n, td) => "
        "n + Number(td.dataset.bytes || 0), 0);") > 0)
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('td.memory')).map(td => "
        "[Number(td.dataset.reserved), Number(td.dataset.limit), td.textContent]);")
    assert len(cells) == 3, cells
    workers = {w["worker_id"]: w for w in api(ui_cluster, "/api/workers")}
    for worker in workers.values():
        assert worker["memory_limit_bytes"] > 0, worker
        assert 0 <= worker["memory_reserved_bytes"] <= worker["memory_limit_bytes"], worker
    for reserved, limit, text in cells:
        assert limit in {w["memory_limit_bytes"] for w in workers.values()}, (cells, workers)
        assert reserved <= limit and " / " in text, cells


def test_log_out_ends_the_browsers_session(ui_cluster, browser):
    """Last of the browser tests: it leaves the browser logged out."""
    browser.get(ui_cluster.http + "/")
    cookie = browser.get_cookie("tally_session")
    assert cookie is not None and cookie["httpOnly"], cookie
    assert ui_cluster.token not in cookie["value"] and len(cookie["value"]) == 64, cookie
    # What the browser holds opens the API only as long as the session lasts.
    session = {"Cookie": f"tally_session={cookie['value']}"}
    assert get_with(ui_cluster.http + "/api/jobs", session)[0] == 200
    browser.find_element(By.ID, "log-out").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "token")))
    assert browser.get_cookie("tally_session") is None
    assert get_with(ui_cluster.http + "/api/jobs", session)[0] == 401
    browser.get(ui_cluster.http + "/")
    assert browser.find_elements(By.ID, "token"), "the log-in form again"


def get_with(url: str, headers: dict, context=None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric_values(text: str) -> dict:
    """Every sample of a Prometheus text exposition, by name and labels."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_parse_and_the_byte_counters_equal_the_jobs_figures(ui_cluster):
    run_report(ui_cluster, ui_cluster.workdir)
    with tally_client.connect(ui_cluster.url, token=ui_cluster.token) as tally:
        tally.sql("SELECT n_regionkey, count(*) FROM nation GROUP BY 1")
    deadline = time.monotonic() + 30
    while any(job["state"] in ("RUNNING", "QUEUED") for job in api(ui_cluster, "/api/jobs")):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    status, text = get(ui_cluster, ui_cluster.http + "/metrics")
    assert status == 200, text
    coordinator = metric_values(text)
    # The jobs' own figures, read through Flight SQL's tally.job action, not the UI.
    job_ids = [job["job_id"] for job in api(ui_cluster, "/api/jobs")]
    with tally_client.connect(ui_cluster.url, token=ui_cluster.token) as tally:
        figures = [tally.metrics(job_id) for job_id in job_ids]
    assert coordinator[("tally_shuffle_bytes_total", ())] == sum(m.shuffle_bytes for m in figures)
    assert coordinator[("tally_shuffle_bytes_total", ())] > 0
    succeeded = sum(1 for m in figures if m.state == "SUCCEEDED")
    assert coordinator[("tally_jobs", (("state", "succeeded"),))] == succeeded
    assert coordinator[("tally_workers", (("state", "alive"),))] == 3
    assert coordinator[("tally_job_duration_seconds_count", ())] >= 2

    # Every worker serves its own metrics on its gRPC port, behind the same token.
    workers = api(ui_cluster, "/api/workers")
    assert len(workers) == 3
    served = 0
    for worker in workers:
        url = f"http://{worker['endpoint']}/metrics"
        assert get(ui_cluster, url, token=None)[0] == 401
        status, text = get(ui_cluster, url)
        assert status == 200, text
        values = metric_values(text)
        served += values[("tally_worker_flight_bytes_served_total", ())]
        assert values[("tally_worker_tasks_total", (("outcome", "succeeded"),))] > 0
        assert values[("tally_worker_memory_limit_bytes", ())] > 0
    # Workers serve every shuffle piece a reader counted, and the answers on top.
    assert served >= coordinator[("tally_shuffle_bytes_total", ())]

    # Without the token nothing is shown.
    assert get(ui_cluster, ui_cluster.http + "/metrics", token=None)[0] == 401
    assert get(ui_cluster, ui_cluster.http + "/api/jobs", token="wrong-token-wrong-token")[0] == 401


def test_with_tls_the_ui_is_served_over_https_with_a_secure_session_cookie(tmp_path, tpch_data):
    from test_tls import self_signed

    pem = self_signed(tmp_path)
    tls = ["--tls-cert", str(tmp_path / "node.pem"), "--tls-key", str(tmp_path / "node.key")]
    tls += ["--tls-ca", str(tmp_path / "node.pem")]
    port = free_port()
    tables = {"nation": tpch_data / "nation"}
    with running_cluster(tmp_path, tables, tls + ["--http-bind", f"127.0.0.1:{port}"],
                         url_scheme="grpc+tls", tls_root_certs=pem) as cluster:
        https = f"https://127.0.0.1:{port}"
        trusted = ssl.create_default_context(cadata=pem.decode())
        with tally_client.connect(f"grpc+tls://{cluster.endpoint}", token=cluster.token, tls_root_certs=pem) as tally:
            tally.sql("SELECT n_regionkey, count(*) FROM nation GROUP BY 1")
            job_id = tally.metrics().job_id
        bearer = {"Authorization": f"Bearer {cluster.token}"}
        status, body = get_with(f"{https}/api/jobs/{job_id}", bearer, trusted)
        assert status == 200, body
        assert json.loads(body)["state"] == "SUCCEEDED"
        # The workers' links point at HTTPS too.
        status, page = get_with(f"{https}/workers", bearer, trusted)
        assert status == 200 and "https://127.0.0.1:" in page, page

        # Logging in over HTTPS sets a Secure session cookie that is not the token.
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=trusted), NoRedirect())
        form = urllib.parse.urlencode({"token": cluster.token}).encode()
        try:
            opener.open(urllib.request.Request(f"{https}/login", data=form), timeout=30)
            raise AssertionError("a log-in answers with a redirect")
        except urllib.error.HTTPError as redirect:
            assert redirect.code == 303, redirect.read()
            cookie = redirect.headers["Set-Cookie"]
        assert cookie.startswith("tally_session=") and "; Secure" in cookie and "HttpOnly" in cookie, cookie
        assert cluster.token not in cookie
        session = {"Cookie": cookie.split(";")[0]}
        assert get_with(f"{https}/api/jobs", session, trusted)[0] == 200

        # Plain HTTP gets no page from the TLS port, nor does a client that trusts no one.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs", timeout=10)
        with pytest.raises(urllib.error.URLError) as refused:
            urllib.request.urlopen(f"{https}/api/jobs", timeout=10, context=ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value), refused.value


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
