"""Web app benchmark: the real ``outreach serve`` under load from wrk, on 127.0.0.1.

Three measurements, each against a fresh SQLite database in a temporary folder and a server
started as a subprocess, exactly as an operator runs it (``outreach serve --no-scheduler``):

- **click**: ``GET /c/{token}`` over 10,000 valid click tokens of the World Refugee Day
  campaign (a browser user agent, one token after another), wrk with ``--threads`` threads and
  ``--connections`` connections for ``--duration`` seconds. After each run the server is
  stopped with SIGTERM and waited for, and the click events in the database are counted
  against the redirects the server answered (its access log): a redirect without its stored
  event is a lost click and fails the run. Events may exceed redirects by the requests wrk
  hung up on when its time was up (stored, but answered to nobody): at most one per
  connection for the warm-up and for the run.
- **sign**: ``POST /s/{token}`` (name, title and the form nonce) with a different
  organisation's sign token for every request, so every POST creates a response. After the
  stop, every thank-you page must be backed by a committed response (same slack as above),
  and no POST may be refused.
- **report**: an admin logs in, then ``GET /admin/campaigns/{id}`` for a campaign with 10,000
  deliveries and 100,000 events; the first (cold) request is shown apart, then the median,
  minimum and maximum of ``--report-requests`` more.

Tokens and form nonces are made with the server's own secret (``OUTREACH_SECRET_KEY``), as the
send loop makes them. Each click and sign run starts a new server, warms it for a second (its
requests are counted too), then measures. The script prints, over ``--runs`` runs, the median,
minimum and maximum of the rate, of wrk's p99 latency and of the server's CPU time per
request, and how many cores the server, wrk and all other processes used meanwhile (from
/proc: the machine's noise). It exits non-zero when a target is missed or an event is lost.

    python bench/bench_web.py                          # all three, 5 runs of 10 s
    python bench/bench_web.py --only click --runs 3 --duration 5

Needs wrk (Debian package ``wrk``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine, func, insert, select

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import CampaignState
from outreach.pipeline.campaigns import load_campaign
from outreach.pipeline.tokens import LinkPurpose, LinkSigner
from outreach.store.admin_users import create_user
from outreach.store.campaigns import save_campaign, set_campaign_state
from outreach.store.engine import open_engine
from outreach.store.tables import contacts, deliveries, events, organisations, responses
from outreach.web.deps import FormGuard

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
OUTREACH = Path(sys.executable).with_name("outreach")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
SECRET = "bench-web-secret-not-for-production"
ADMIN = ("bench-admin", "bench-admin-password")
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
LINK_CTA = "policy-transfer-platform"
SIGN_CTA = "sign-statement"
REGIONS = [
    ("Africa", "SN", "Africa/Dakar", "fr"),
    ("Asia-Pacific", "JP", "Asia/Tokyo", "en"),
    ("Europe", "ES", "Europe/Madrid", "es"),
    ("Latin America", "BR", "America/Sao_Paulo", "pt-BR"),
    ("Middle East", "JO", "Asia/Amman", "en"),
    ("North America", "CA", "America/Toronto", "fr"),
]
CITIES = ["São Paulo", "Montréal", "Barcelona", "Kraków", "東京", "القاهرة", "Dakar", "Amman"]
PEOPLE = ["Ana Souza", "Jean-François Tremblay", "María Fernández", "Zofia Wójcik", "山田 花子"]
ROWS_PER_INSERT = 5_000
ACCESS = re.compile(r'"(GET|HEAD|POST) /([a-z])/\S* HTTP/1\.1" (\d{3})')

# Targets of issue 3.
CLICK_RATE, CLICK_P99_MS = 10_000, 50.0
SIGN_RATE = 500
REPORT_MS = 500.0

# wrk's Lua side: each thread takes every n-th line of the request file (the ready-made
# requests), sends them in turn and counts how often it ran out and started again; the
# summary comes back as one line the script parses.
WRK_SCRIPT = r"""
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, mode, count = args[1], args[2], tonumber(args[3])
  local headers = {["User-Agent"] = args[4], ["Accept"] = "text/html"}
  if mode == "sign" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  requests, position, wrapped = {}, 0, 0
  local index = 0
  for line in io.lines(path) do
    if index % count == id then
      if mode == "sign" then
        local token, body = line:match("^(%S+) (%S+)$")
        table.insert(requests, wrk.format("POST", "/s/" .. token, headers, body))
      else
        table.insert(requests, wrk.format("GET", "/c/" .. line, headers))
      end
    end
    index = index + 1
  end
end

function request()
  position = position + 1
  if position > #requests then
    position, wrapped = 1, wrapped + 1
  end
  return requests[position]
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d wrapped=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    wrapped))
end
"""


# --- the data ---------------------------------------------------------------------------------


@dataclass
class World:
    """A seeded database: the campaign, its deliveries, and what the script needs to load it."""

    url: str
    engine: Engine
    campaign: Campaign
    delivery_ids: list[int]  # deliveries of the campaign, in contact order


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_INSERT):
        yield rows[start : start + ROWS_PER_INSERT]


def _bulk(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        for chunk in _chunks(rows):
            connection.execute(insert(table), chunk)


def seed_world(
    folder: Path, name: str, *, organisations_count: int, contacts_per_organisation: int
) -> World:
    """Organisations, contacts, the campaign and one sent delivery per contact."""
    url = f"sqlite:///{folder / name}"
    engine = open_engine(url)
    sent = datetime.now(UTC) - timedelta(days=7)
    campaign = load_campaign(CAMPAIGN, templates={"newsletter", "reminder"})
    save_campaign(engine, campaign, source_path=str(CAMPAIGN), now=sent)
    set_campaign_state(engine, campaign.id, CampaignState.SENT, now=sent)
    org_rows: list[dict[str, Any]] = []
    contact_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for org in range(1, organisations_count + 1):
        region, country, zone, language = REGIONS[org % len(REGIONS)]
        org_rows.append(
            {
                "id": org,
                "name": f"{CITIES[org % len(CITIES)]} {org:06d}",
                "country": country,
                "region": region,
                "timezone": zone,
            }
        )
        for person in range(contacts_per_organisation):
            contact = (org - 1) * contacts_per_organisation + person + 1
            contact_rows.append(
                {
                    "id": contact,
                    "organisation_id": org,
                    "email": f"person{contact}@city{org}.example.org",
                    "name": PEOPLE[contact % len(PEOPLE)],
                    "language": language,
                    "tags": ["member"],
                    "created_at": sent,
                    "updated_at": sent,
                }
            )
            status = "sent"
            if contact % 97 == 0:
                status = "failed"
            elif contact % 89 == 0:
                status = "bounced"
            delivery_rows.append(
                {
                    "id": contact,
                    "campaign_id": campaign.id,
                    "contact_id": contact,
                    "round": 0,
                    "language": campaign.language_for(language),
                    "status": status,
                    "attempts": 1,
                    "queued_at": sent,
                    "sent_at": sent + timedelta(seconds=contact % 3600),
                    "updated_at": sent,
                }
            )
    _bulk(engine, organisations, org_rows)
    _bulk(engine, contacts, contact_rows)
    _bulk(engine, deliveries, delivery_rows)
    create_user(engine, ADMIN[0], ADMIN[1], now=sent)
    return World(url, engine, campaign, [row["id"] for row in delivery_rows])


def seed_activity(world: World, *, events_count: int, signed_share: float = 0.2) -> None:
    """What members did: ``events_count`` events in all, and a response from a share of the
    organisations (each with its ``signed`` event)."""
    campaign = world.campaign.id
    sent = datetime.now(UTC) - timedelta(days=7)
    with world.engine.connect() as connection:
        people = connection.execute(
            select(deliveries.c.id, contacts.c.id, contacts.c.organisation_id).join(
                contacts, contacts.c.id == deliveries.c.contact_id
            )
        ).all()
    signed_orgs: dict[int, tuple[int, int]] = {}
    for delivery, contact, org in people:
        if org % round(1 / signed_share) == 0:
            signed_orgs.setdefault(org, (delivery, contact))
    response_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    for number, (org, (delivery, contact)) in enumerate(sorted(signed_orgs.items())):
        at = sent + timedelta(hours=2, minutes=number * 7 % 10_000)
        response_rows.append(
            {
                "campaign_id": campaign,
                "organisation_id": org,
                "contact_id": contact,
                "delivery_id": delivery,
                "cta_id": SIGN_CTA,
                "signer_name": PEOPLE[org % len(PEOPLE)],
                "signer_title": "Mayor",
                "created_at": at,
            }
        )
        event_rows.append(
            _event(delivery, campaign, "signed", at, SIGN_CTA, f"signed:{campaign}:{org}:sign")
        )
    # The rest, in proportions like a real campaign's: delivered, opened, clicked (a fifth by
    # suspected scanners), a few bounces, unsubscribes and deferrals.
    kinds = ["delivered"] * 10 + ["opened"] * 30 + ["clicked"] * 55 + ["deferred"] * 5
    index = 0
    while len(event_rows) < events_count:
        delivery = people[index % len(people)][0]
        kind = kinds[index % len(kinds)]
        if index % 997 == 0:
            kind = "bounced"
        elif index % 991 == 0:
            kind = "unsubscribed"
        at = sent + timedelta(seconds=(index * 37) % (14 * 86400))
        cta = LINK_CTA if kind == "clicked" else None
        event = _event(delivery, campaign, kind, at, cta, None)
        event["suspected_bot"] = kind == "clicked" and index % 5 == 0
        event_rows.append(event)
        index += 1
    _bulk(world.engine, responses, response_rows)
    _bulk(world.engine, events, event_rows)


def _event(
    delivery: int, campaign: str, kind: str, at: datetime, cta: str | None, dedupe: str | None
) -> dict[str, Any]:
    return {
        "delivery_id": delivery,
        "campaign_id": campaign,
        "kind": kind,
        "occurred_at": at,
        "cta_id": cta,
        "user_agent": BROWSER if kind in ("clicked", "opened") else None,
        "suspected_bot": False,
        "source": "outreach",
        "dedupe_key": dedupe,
        "payload": None,
    }


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table).where(*where)) or 0)


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answered(self, path_letter: str) -> dict[int, int]:
        """Responses the server started, by status, for one kind of link (its access log;
        empty when the server logs no access lines)."""
        statuses: dict[int, int] = {}
        with self.log.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                found = ACCESS.search(line)
                if found and found.group(2) == path_letter:
                    status = int(found.group(3))
                    statuses[status] = statuses.get(status, 0) + 1
        return statuses


@contextmanager
def server(world: World, folder: Path, name: str, workers: int = 1) -> Iterator[Server]:
    """``outreach serve`` on a free port; stopped by its PID with SIGTERM, then waited for."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(
        OUTREACH_DATABASE_URL=world.url,
        OUTREACH_SECRET_KEY=SECRET,
        OUTREACH_BASE_URL=f"http://127.0.0.1:{port}",
    )
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        command = [str(OUTREACH), "serve", "--no-scheduler", "--workers", str(workers)]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, port, log)
    try:
        _wait_ready(running)
        yield running
    except BaseException:
        stop(running, check=False)
        raise
    stop(running)


def _wait_ready(running: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise SystemExit(f"the server exited:\n{running.log.read_text()[-2000:]}")
        try:
            httpx.get(f"{running.base_url}/admin/login", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the server did not start within 30 s")


def stop(running: Server, *, check: bool = True) -> None:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
            raise SystemExit("the server did not stop within 60 s of SIGTERM") from None
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly (and says so when
    # it logs at info level, as ``outreach serve`` does)
    log = running.log.read_text(errors="replace")
    clean = "Finished server process" in log or "Started server process" not in log
    if check and (running.process.returncode not in (0, -signal.SIGTERM) or not clean):
        raise SystemExit(f"the server did not stop cleanly ({running.process.returncode})")


# --- wrk --------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrapped: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    running: Server, *, script: Path, lines: Path, mode: str, args: argparse.Namespace, seconds: int
) -> WrkResult:
    command = [
        WRK,
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={seconds}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        running.base_url,
        "--",
        str(lines),
        mode,
        str(args.threads),
        BROWSER,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"^BENCH (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    values = {k: int(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    return WrkResult(
        requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        errors={k: values[k] for k in ("connect", "read", "write", "status", "timeout")},
        p50_ms=values["p50_us"] / 1000,
        p90_ms=values["p90_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        max_ms=values["max_us"] / 1000,
        wrapped=values["wrapped"],
    )


# --- the measurements -------------------------------------------------------------------------


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    def show(value: float) -> str:
        return f"{value:,.{digits}f}"

    unit = f" {unit}" if unit else ""
    return (
        f"median {show(statistics.median(values))}{unit} "
        f"(min {show(min(values))}, max {show(max(values))})"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


@dataclass
class CpuMark:
    """CPU seconds so far: the whole machine's busy time, the server's, and the rest of ours
    (this script and its waited-for children: wrk)."""

    busy: float
    server: float
    client: float
    at: float

    @classmethod
    def now(cls, running: Server) -> CpuMark:
        """Marks the time; ``running`` is the server, a child not yet waited for."""
        hertz = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
        server_ticks = sum(_process_ticks(pid) for pid in _process_tree(running.process.pid))
        client = sum(
            usage.ru_utime + usage.ru_stime
            for usage in (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
        )
        return cls(
            busy=(sum(ticks) - ticks[3] - ticks[4]) / hertz,  # all but idle and iowait
            server=server_ticks / hertz,
            client=client,
            at=time.monotonic(),
        )


def _process_tree(pid: int) -> list[int]:
    """The server and its children (``outreach serve --workers N`` runs N server processes)."""
    found, index = [pid], 0
    while index < len(found):
        try:
            with open(f"/proc/{found[index]}/task/{found[index]}/children") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            pass
        index += 1
    return found


def _process_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@dataclass
class CpuUse:
    """Cores used between two marks: by the server, by wrk (and this script), by the rest."""

    server: float
    client: float
    others: float

    @classmethod
    def between(cls, start: CpuMark, end: CpuMark) -> CpuUse:
        seconds = end.at - start.at
        server = (end.server - start.server) / seconds
        client = (end.client - start.client) / seconds
        busy = (end.busy - start.busy) / seconds
        return cls(server, client, max(0.0, busy - server - client))

    def per_request_us(self, rate: float) -> float:
        """The server's CPU time per request, in microseconds."""
        return 1e6 * self.server / rate

    def __str__(self) -> str:
        return (
            f"cores used: server {self.server:.2f}, wrk {self.client:.2f}, "
            f"other processes {self.others:.2f}"
        )


def _answered(running: Server, letter: str, status: int, *runs: WrkResult) -> tuple[int, int]:
    """Answers with ``status`` and answers with any other status, from the server's access
    log; when it logs none, from wrk (which counts only answers that reached it)."""
    logged = running.answered(letter)
    if logged:
        return logged.get(status, 0), sum(n for code, n in logged.items() if code != status)
    return sum(r.requests - r.errors["status"] for r in runs), sum(r.errors["status"] for r in runs)


def _summary(name: str, results: list[WrkResult], noise: list[CpuUse], digits: int) -> str:
    cpu = [n.per_request_us(r.rate) for n, r in zip(noise, results, strict=True)]
    return (
        f"{name}: {spread([r.rate for r in results], 'requests/s')}; "
        f"p99 {spread([r.p99_ms for r in results], 'ms', digits)}; "
        f"server CPU per request {spread(cpu, 'µs')}; cores used by the server "
        f"{spread([n.server for n in noise], '', 2)}, by other processes "
        f"{spread([n.others for n in noise], '', 2)}"
    )


def measure_clicks(world: World, folder: Path, args: argparse.Namespace) -> list[str]:
    signer = LinkSigner(secret=SECRET.encode(), base_url="", lifetime=timedelta(days=365))
    issued = datetime.now(UTC) - timedelta(days=7)
    lines = folder / "click-tokens.txt"
    lines.write_text(
        "".join(
            signer.token(
                LinkPurpose.CLICK,
                campaign_id=world.campaign.id,
                delivery_id=delivery,
                cta_id=LINK_CTA,
                now=issued,
            )
            + "\n"
            for delivery in world.delivery_ids
        )
    )
    script = folder / "bench.lua"
    results: list[WrkResult] = []
    noise: list[CpuUse] = []
    failures: list[str] = []
    clicked = events.c.kind == "clicked"
    for run in range(1, args.runs + 1):
        before = count(world.engine, events, clicked)
        with server(world, folder, f"click-{run}", args.server_workers) as running:
            warm = run_wrk(running, script=script, lines=lines, mode="click", args=args, seconds=1)
            mark = CpuMark.now(running)
            result = run_wrk(
                running, script=script, lines=lines, mode="click", args=args, seconds=args.duration
            )
            noise.append(CpuUse.between(mark, CpuMark.now(running)))
        recorded = count(world.engine, events, clicked) - before
        redirects, others = _answered(running, "c", 302, warm, result)
        # wrk hangs up on the requests still in flight when its time is up (at most one per
        # connection, twice: warm-up and run); the server stores those clicks but, the client
        # gone, answers nobody. A redirect without its stored event would be a lost click.
        lost = max(0, redirects - recorded)
        unanswered = max(0, recorded - redirects)
        ok = not lost and unanswered <= 2 * args.connections and not others
        ok = ok and not any(result.errors.values())
        print(
            f"  click run {run}: {result.rate:,.0f} requests/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms; {redirects:,} redirects "
            f"answered, {recorded:,} click events stored after the stop ({lost} lost, "
            f"{unanswered} for requests wrk hung up on){'' if ok else ' — MISMATCH'}; "
            f"{noise[-1]}, {noise[-1].per_request_us(result.rate):.0f} µs of server CPU per "
            f"request; {load()}",
            flush=True,
        )
        if not ok:
            failures.append(
                f"click run {run}: {redirects} redirects answered (other statuses: {others}) "
                f"but {recorded} click events stored; wrk errors {result.errors}"
            )
        results.append(result)
    print(_summary("click", results, noise, 2))
    rate = statistics.median(r.rate for r in results)
    p99 = statistics.median(r.p99_ms for r in results)
    if rate < CLICK_RATE:
        failures.append(f"click: median {rate:,.0f} requests/s < {CLICK_RATE:,}")
    if p99 >= CLICK_P99_MS:
        failures.append(f"click: median p99 {p99:.1f} ms >= {CLICK_P99_MS:.0f} ms")
    return failures


def _sign_requests(world: World, path: Path, delivery_ids: list[int], *, issued: datetime) -> Path:
    """One line per request: a sign token and its form (name, title, nonce), each for another
    organisation's delivery."""
    signer = LinkSigner(secret=SECRET.encode(), base_url="", lifetime=timedelta(days=365))
    guard = FormGuard(secret=SECRET.encode())
    now = datetime.now(UTC)
    with path.open("w") as out:
        for delivery in delivery_ids:
            token = signer.token(
                LinkPurpose.SIGN,
                campaign_id=world.campaign.id,
                delivery_id=delivery,
                cta_id=SIGN_CTA,
                now=issued,
            )
            form = {
                "name": PEOPLE[delivery % len(PEOPLE)],
                "title": "Mayor",
                "nonce": guard.nonce(action="sign", token=token, now=now),
            }
            out.write(f"{token} {urlencode(form)}\n")
    return path


def measure_signs(folder: Path, args: argparse.Namespace) -> list[str]:
    per_run = (args.duration + 1) * args.sign_capacity
    started = time.perf_counter()
    world = seed_world(
        folder, "sign.db", organisations_count=per_run * args.runs, contacts_per_organisation=1
    )
    print(
        f"  sign: {per_run * args.runs:,} organisations, one contact and one delivery each, "
        f"seeded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    issued = datetime.now(UTC) - timedelta(days=1)
    script = folder / "bench.lua"
    results: list[WrkResult] = []
    noise: list[CpuUse] = []
    failures: list[str] = []
    for run in range(1, args.runs + 1):
        mine = world.delivery_ids[(run - 1) * per_run : run * per_run]
        warm_lines = _sign_requests(
            world, folder / f"sign-{run}-warm.txt", mine[: args.sign_capacity], issued=issued
        )
        timed_lines = _sign_requests(
            world, folder / f"sign-{run}-timed.txt", mine[args.sign_capacity :], issued=issued
        )
        before = count(world.engine, responses)
        with server(world, folder, f"sign-{run}", args.server_workers) as running:
            warm = run_wrk(
                running, script=script, lines=warm_lines, mode="sign", args=args, seconds=1
            )
            mark = CpuMark.now(running)
            result = run_wrk(
                running,
                script=script,
                lines=timed_lines,
                mode="sign",
                args=args,
                seconds=args.duration,
            )
            noise.append(CpuUse.between(mark, CpuMark.now(running)))
        created = count(world.engine, responses) - before
        thanked, refused = _answered(running, "s", 200, warm, result)
        # As with clicks: a POST that wrk hung up on may be committed and answer nobody; a 2xx
        # without its committed row would tell a city it signed when it had not.
        unbacked = max(0, thanked - created)
        unanswered = max(0, created - thanked)
        wrapped = warm.wrapped + result.wrapped
        ok = not unbacked and unanswered <= 2 * args.connections and not refused
        ok = ok and not wrapped and not any(result.errors.values())
        print(
            f"  sign run {run}: {result.rate:,.0f} requests/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.0f} ms; {thanked:,} thank-you "
            f"pages, {created:,} responses committed ({unbacked} pages without a row, "
            f"{unanswered} for requests wrk hung up on), {refused} refused"
            f"{'' if ok else ' — MISMATCH'}; {noise[-1]}, "
            f"{noise[-1].per_request_us(result.rate):.0f} µs of server CPU per request; {load()}",
            flush=True,
        )
        if wrapped:
            failures.append(f"sign run {run}: ran out of tokens; raise --sign-capacity")
        elif not ok:
            failures.append(
                f"sign run {run}: {thanked} thank-you pages, {created} responses committed, "
                f"{refused} refused; wrk errors {result.errors}"
            )
        results.append(result)
    world.engine.dispose()
    print(_summary("sign", results, noise, 1))
    rate = statistics.median(r.rate for r in results)
    if rate < SIGN_RATE:
        failures.append(f"sign: median {rate:,.0f} requests/s < {SIGN_RATE}")
    return failures


def measure_report(world: World, folder: Path, args: argparse.Namespace) -> list[str]:
    with (
        server(world, folder, "report", args.server_workers) as running,
        httpx.Client(base_url=running.base_url, timeout=60) as client,
    ):
        form = client.get("/admin/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if token is None:
            raise SystemExit("the admin login form carries no CSRF token")
        login = client.post(
            "/admin/login",
            data={
                "username": ADMIN[0],
                "password": ADMIN[1],
                "csrf_token": token.group(1),
                "next": "/admin",
            },
        )
        if login.status_code != 303:
            raise SystemExit(f"admin login failed: {login.status_code}")
        timings: list[float] = []
        size = 0
        for _ in range(args.report_requests + 1):
            started = time.perf_counter()
            page = client.get(f"/admin/campaigns/{world.campaign.id}")
            timings.append((time.perf_counter() - started) * 1000)
            if page.status_code != 200 or f"({LINK_CTA})" not in page.text:
                raise SystemExit(f"the report did not render: {page.status_code}")
            size = len(page.content)
    cold, warm = timings[0], timings[1:]
    print(
        f"report: first request {cold:.0f} ms, then {spread(warm, 'ms')} over "
        f"{len(warm)} requests; {size / 1024:.0f} KB of HTML; {load()}"
    )
    if statistics.median(warm) >= REPORT_MS:
        return [f"report: median {statistics.median(warm):.0f} ms >= {REPORT_MS:.0f} ms"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="report,click,sign", help="comma-separated measures")
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per measure")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--server-workers", type=int, default=1, help="outreach serve --workers (processes)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--report-requests", type=int, default=7, help="timed report requests after the first"
    )
    parser.add_argument(
        "--sign-capacity", type=int, default=4_000, help="sign tokens per second of each run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    for name in ("runs", "duration", "threads", "connections", "report_requests", "sign_capacity"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("wrk needs at least one connection per thread")
    if args.deliveries < 4 or args.events < args.deliveries // 4:
        parser.error("use at least 4 deliveries, and events for at least a quarter of them")
    chosen = {part.strip() for part in args.only.split(",") if part.strip()}
    if unknown := chosen - {"report", "click", "sign"}:
        parser.error(f"unknown measure(s): {', '.join(sorted(unknown))}")
    if not Path(WRK).exists() and chosen & {"click", "sign"}:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-web-"))
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {load()}; folder {folder}")
    failures: list[str] = []
    try:
        (folder / "bench.lua").write_text(WRK_SCRIPT)
        if chosen & {"report", "click"}:
            started = time.perf_counter()
            world = seed_world(
                folder,
                "campaign.db",
                organisations_count=max(1, args.deliveries // 4),
                contacts_per_organisation=4,
            )
            seed_activity(world, events_count=args.events)
            print(
                f"seeded {count(world.engine, deliveries):,} deliveries and "
                f"{count(world.engine, events):,} events in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            if "report" in chosen:  # before the clicks add their events
                failures += measure_report(world, folder, args)
            if "click" in chosen:
                failures += measure_clicks(world, folder, args)
            world.engine.dispose()
        if "sign" in chosen:
            failures += measure_signs(folder, args)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    for failure in failures:
        print(f"MISSED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
