"""Issue 20, item 10: the parent of several worker processes shows their metrics.

`serve --workers N` (the default on PostgreSQL) and `worker --processes N
--metrics-port P` charge in child processes; the parent's `/metrics` (and its
metrics port) must show the sum over its children, those that exited included,
through the Prometheus client's multiprocess mode in a directory of the parent's
own. Real processes on SQLite and PostgreSQL: invoices are charged through the
children, the parent is scraped, a child is SIGKILLed and its counts stay; the
directory is gone once the parent stopped.

The scrapes are read with the Prometheus client's own text parser, and one
child's file with its own multiprocess collector (the library, not Antaeus).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_cli import Cli, _free_port, serving
from tests.cli.test_graceful_stop import _signal_and_wait, _wait_for_paid
from tests.cli.test_processes import _children as _children_of
from tests.cli.test_processes import _wait_for_children
from tests.cli.test_provider_unreachable import started, wait_for_text

INVOICES = 60
API_TOKEN = "ant_metrics_processes_test_token_0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _setup(cli: Cli) -> None:
    cli.env.update(
        ANTAEUS_API_TOKEN=API_TOKEN,
        ANTAEUS_SIMULATED_LATENCY_MS="50",
        ANTAEUS_SIMULATED_FAILURE_RATE="0",
        ANTAEUS_WORKER_CONCURRENCY="5",
        ANTAEUS_BATCH_SIZE="5",
        ANTAEUS_LOG_LEVEL="warning",  # the supervisor's restart lines
    )
    cli.ok("seed", "--seed", "20", "--customers", str(INVOICES), "--invoices-per-customer", "1")


def _scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"{key} twice in one scrape"
            samples[key] = s.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _paid(cli: Cli) -> int:
    [(paid,)] = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")
    return int(paid)


def _metrics_dir(pid: int) -> Path:
    """The multiprocess directory a child process was started with (its environment)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert found, f"process {pid} runs without PROMETHEUS_MULTIPROC_DIR"
    return Path(found[0].decode())


def _charged_by(directory: Path, pid: int) -> float:
    """What one process's own counter file says it charged (read by the client library)."""
    with tempfile.TemporaryDirectory() as alone:
        shutil.copy(directory / f"counter_{pid}.db", alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, alone)
        return registry.get_sample_value("antaeus_charges_total", {"outcome": "charged"}) or 0.0


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.1)


def _assert_charges_counted(samples: Samples, paid: int) -> None:
    assert _value(samples, "antaeus_charges_total", outcome="charged") == paid, samples
    # one provider call per charge here (no failures): the children's histograms, summed
    assert _value(samples, "antaeus_charge_duration_seconds_count") >= paid
    # a gauge shows once, without a pid label: the maximum of the live processes
    paused = [k for k in samples if k[0] == "antaeus_charging_paused"]
    assert paused == [("antaeus_charging_paused", frozenset())], paused
    assert _value(samples, "antaeus_charging_paused") == 0


def test_serve_workers_metrics_are_the_sum_over_the_children(cli: Cli) -> None:
    _setup(cli)
    with serving(cli, "--workers", "2") as server:  # the scheduler opens the run
        children = _wait_for_children(server.process.pid, 2)
        _wait_for_paid(cli, INVOICES, timeout=120)
        paid = _paid(cli)
        url = f"{server.base_url}/metrics"
        _assert_charges_counted(_scrape(url, API_TOKEN), paid)

        directory = _metrics_dir(min(children))
        assert directory == _metrics_dir(max(children))
        assert directory.is_dir()
        assert str(directory).startswith(tempfile.gettempdir()), directory
        by_child = {pid: _charged_by(directory, pid) for pid in children}
        assert sum(by_child.values()) == paid, by_child
        victim = max(by_child, key=lambda pid: by_child[pid])
        assert by_child[victim] > 0, by_child

        os.kill(victim, signal.SIGKILL)
        wait_for_text(server.process, server.stderr_path, "worker_process_restarted", 30)
        after = _wait_for_children(server.process.pid, 2)
        assert victim not in after
        # the dead child's counts stay; its live gauges are gone (mark_process_dead)
        _assert_charges_counted(_scrape(url, API_TOKEN), paid)
        assert (directory / f"counter_{victim}.db").exists()
        assert not list(directory.glob(f"gauge_live*_{victim}.db"))
        _wait_for_file(directory / f"gauge_livemax_{max(after - children)}.db")  # the new child
        _signal_and_wait(server.process, server.stderr_path, signal.SIGTERM)
    assert server.process.returncode == 0, server.stderr()
    assert not directory.exists(), "the parent's metrics directory outlived it"


def test_worker_processes_serve_their_sum_on_the_metrics_port(cli: Cli) -> None:
    _setup(cli)
    port = _free_port()
    with serving(cli, "--no-worker") as server:  # the scheduler opens the run
        args = ("worker", "--processes", "2", "--metrics-port", str(port))
        with started(cli, *args, name="worker") as (process, stderr):
            children = _wait_for_children(process.pid, 2)
            _wait_for_paid(cli, INVOICES, timeout=120)
            _assert_charges_counted(_scrape(f"http://127.0.0.1:{port}/metrics"), _paid(cli))
            directory = _metrics_dir(min(children))
            _signal_and_wait(process, stderr, signal.SIGTERM)
            assert process.returncode == 0, stderr.read_text()
        assert not directory.exists()
        # the serve process charged nothing: its own /metrics has no charge
        api = _scrape(f"{server.base_url}/metrics", API_TOKEN)
        assert _value(api, "antaeus_charges_total", outcome="charged") == 0


def test_one_serve_process_keeps_its_own_metrics(cli: Cli) -> None:
    """`serve --workers 1` charges in the process itself: its /metrics shows it, as before."""
    _setup(cli)
    with serving(cli, "--workers", "1") as server:
        assert _children_of(server.process.pid) == set()
        _wait_for_paid(cli, INVOICES, timeout=120)
        samples = _scrape(f"{server.base_url}/metrics", API_TOKEN)
        _assert_charges_counted(samples, _paid(cli))
        assert any(name.startswith("process_") for name, _ in samples), samples.keys()


def _gauge_of(directory: Path, pid: int, name: str) -> float | None:
    """One process's own value of a livemax gauge (its file alone, read by the client)."""
    with tempfile.TemporaryDirectory() as alone:
        shutil.copy(directory / f"gauge_livemax_{pid}.db", alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, alone)
        return registry.get_sample_value(name)


def test_charging_paused_is_the_maximum_over_the_workers(cli: Cli) -> None:
    """Both workers paused by a provider that refuses our key: the parent shows 1, not 2."""
    _setup(cli)
    port = _free_port()
    cli.env.update(
        ANTAEUS_PAYMENT_PROVIDER_URL=f"http://127.0.0.1:{port}",
        ANTAEUS_PAYMENT_PROVIDER_API_KEY="sk_the_wrong_key",
    )
    provider = ("provider", "serve", "--port", str(port), "--api-key", "sk_the_right_key")
    with started(cli, *provider, name="provider"), serving(cli, "--workers", "2") as server:
        children = _wait_for_children(server.process.pid, 2)
        url = f"{server.base_url}/metrics"
        deadline = time.monotonic() + 60
        while _value(_scrape(url, API_TOKEN), "antaeus_charging_paused") != 1:
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        directory = _metrics_dir(min(children))
        # each worker says it is paused (the one refused, the other from the database)
        own: dict[int, float | None] = {}
        while set(own.values()) != {1.0}:
            assert time.monotonic() < deadline, own
            own = {pid: _gauge_of(directory, pid, "antaeus_charging_paused") for pid in children}
            time.sleep(0.2)
        samples = _scrape(url, API_TOKEN)
        assert _value(samples, "antaeus_charging_paused") == 1, own  # the maximum, not 2
        assert _value(samples, "antaeus_charges_total", outcome="charged") == 0
        assert _paid(cli) == 0
