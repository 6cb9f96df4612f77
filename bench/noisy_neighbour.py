"""Noisy neighbour: what one user's hostile input costs another, well-behaved user.

A victim (its own user) does what a dashboard, a training run and a monitor do, one thread per
operation (bench/_victim.py): GET the first page of its job's predictions and GET `/trends`
every `--victim-period` s (its API key), POST a 1,000-row round every `--ingest-period` s (the
job's token), GET `/healthz`, and with `predict_flood` also call predict on a fast model. Its
latencies are recorded per phase: a baseline with no attack, then each attack alone for
`--seconds`, then the baseline again as a control (if that moved, the machine drifted and the
ratios are unreliable). After each attack the attacker's requests in flight finish or time out,
the script waits until the server answers `/trends` normally again (how long that took is part
of the attack's outcome: abandoned requests may go on burning the server), then a quiet gap.
Targets: the victim's p50 and p99 of every operation under each attack within 2x of the
baseline with no failed victim request, and every acknowledged victim row stored.

Each attack has its own attacker, another user with its own key (`training`, `production`); each
runs in a separate process with bounded concurrency (bench/_attacks.py):
  regex          a job whose JSON Schema validator has `"pattern": "^(a+)+$"`, fed `"aaa...a!"`
  long_texts     one item with a 900,000-character ground truth and a different prediction
  unique_items   `{"type": "array", "uniqueItems": true}` and a 4,000-object array
  big_bodies     unauthenticated 30 MiB bodies to `POST /api/training/jobs`
  predict_flood  100 concurrent predict calls to a model behind a slow upstream (the tests'
                 fake OpenAI endpoint, in a subprocess); the victim then also calls a fast one
Client, attacker and server share this machine's cores, so even an attack the server shrugs
off costs the victim some CPU; the ratios are an upper bound on the server's share.

Exit status 1 when any target fails. Options: `--help`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from _attacks import ATTACKS, AttackSettings, run_attack, stored
from _common import (
    Server,
    create_key,
    fake_openai_upstream,
    postgres_database,
    running_server,
    verdict,
)
from _victim import OpStats, Victim, VictimConfig, percentile, phase_stats, plain

JOB = "victim"
VICTIM_MODEL = "victim-echo"
WARMUP_S = 5.0
READY_LIMIT_S = 120.0  # attacker process start + setup (long texts take a moment to build)
TARGET_RATIO = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Victim latency (p50/p99) with and without each attack, as ratios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument(
        "--attacks", default=",".join(ATTACKS), help=f"comma-separated, of {', '.join(ATTACKS)}"
    )
    parser.add_argument("--json", type=Path, help="also save the figures as JSON here")
    parser.add_argument("--gap", type=float, default=3.0, help="quiet seconds after each attack")
    parser.add_argument("--concurrency", type=int, default=3, help="attacker threads")
    parser.add_argument("--attack-timeout", type=float, default=60.0, help="per attack request")
    parser.add_argument("--victim-timeout", type=float, default=30.0, help="per victim request")
    parser.add_argument(
        "--victim-period", type=float, default=0.25, help="seconds between a victim's reads"
    )
    parser.add_argument(
        "--ingest-period", type=float, default=1.0, help="seconds between the victim's ingests"
    )
    parser.add_argument("--settle-max", type=float, default=120.0, help="longest settle wait")
    parser.add_argument("--regex-n", type=int, default=26, help="a's before the '!'")
    parser.add_argument("--text-chars", type=int, default=900_000)
    parser.add_argument("--unique-items", type=int, default=4_000)
    parser.add_argument("--body-mib", type=int, default=30)
    parser.add_argument("--flood-calls", type=int, default=100, help="concurrent predict calls")
    parser.add_argument("--flood-upstream-ms", type=int, default=3_000)
    args = parser.parse_args(argv)
    args.attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(args.attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"unknown attacks {unknown}; known: {', '.join(ATTACKS)}")
    return args


def settle(url: str, key: str, reference_s: float, limit_s: float, timeout: float) -> float | None:
    """Seconds until `/trends` answers within `reference_s` three times in a row (the server
    has finished what the attack left it), or None after `limit_s`."""
    started = time.monotonic()
    good = 0
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=timeout) as http:
        while time.monotonic() - started < limit_s:
            probe = time.perf_counter()
            ok = False
            with contextlib.suppress(httpx.HTTPError):
                ok = http.get(f"/api/training/predictions/{JOB}/trends").status_code == 200
            good = good + 1 if ok and time.perf_counter() - probe <= reference_s else 0
            if good >= 3:
                return time.monotonic() - started
            time.sleep(0.2)
    return None


def server_memory_mib(server: Server) -> tuple[float, float] | None:
    """(current RSS, peak RSS) of the server process in MiB, from /proc (Linux only)."""
    if server.process is None:
        return None
    try:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        return (
            int(fields["VmRSS"].split()[0]) / 1024,
            int(fields["VmHWM"].split()[0]) / 1024,
        )
    except (KeyError, ValueError):
        return None


def run_attack_process(name: str, settings: AttackSettings, victim: Victim) -> dict[str, Any]:
    """One attack phase: the attacker in its own process; the victim is measured for the
    attack's `seconds`. The attacker then lets its requests in flight finish (or time out);
    one that overruns that by a margin is killed."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    results: Any = context.Queue()
    process = context.Process(
        target=run_attack, args=(name, settings, ready, results), name=f"attack-{name}"
    )
    process.start()
    try:
        if not ready.wait(READY_LIMIT_S):
            return {"setup": "attacker not ready in time", "shots": [], "drain_s": 0.0}
        with victim.measuring(name):
            time.sleep(settings.seconds)
        ended = time.monotonic()
        try:
            result: dict[str, Any] = results.get(timeout=settings.timeout + 30)
        except queue.Empty:
            result = {"setup": "attacker overran its time and was killed", "shots": []}
        result["drain_s"] = time.monotonic() - ended
        return result
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def describe_shots(shots: list[tuple[str, float]]) -> str:
    if not shots:
        return "no requests"
    outcomes = Counter(outcome for outcome, _ in shots)
    times = [seconds for _, seconds in shots]
    spread = ", ".join(f"{o} x{n}" for o, n in outcomes.most_common())
    return (
        f"{len(shots)} requests ({spread}); each took p50 {percentile(times, 50):.2f} s, "
        f"max {max(times):.2f} s"
    )


def ratio_rows(base: dict[str, OpStats], load: dict[str, OpStats]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for op, ref in base.items():
        st = load.get(op)
        if st is None:
            rows[op] = {"p50": None, "p99": None, "errors": 0, "verdict": verdict(False)}
            continue
        p50, p99 = st.p50_ms / ref.p50_ms, st.p99_ms / ref.p99_ms
        errors = sum(st.errors.values())
        ok = p50 <= TARGET_RATIO and p99 <= TARGET_RATIO and errors == 0
        rows[op] = {"p50": p50, "p99": p99, "errors": errors, "verdict": verdict(ok)}
    return rows


def print_phase(title: str, stats: dict[str, OpStats], ratios: dict[str, Any] | None) -> None:
    print(f"  {title}")
    header = f"    {'operation':<10}{'count':>6}{'p50 ms':>10}{'p99 ms':>10}"
    if ratios is not None:
        header += f"{'p50 ratio':>11}{'p99 ratio':>11}  verdict"
    print(header + "  errors")
    for op in dict.fromkeys([*(ratios or {}), *stats]):
        st = stats.get(op)
        if st is None:
            print(f"    {op:<10}{0:>6}  (no request of the victim's started in this phase)  FAIL")
            continue
        line = f"    {op:<10}{st.count:>6}{st.p50_ms:>10.1f}{st.p99_ms:>10.1f}"
        if ratios is not None and op in ratios:
            r = ratios[op]
            line += f"{r['p50']:>10.2f}x{r['p99']:>10.2f}x  {r['verdict']:<7}"
        errors = ", ".join(f"{o} x{n}" for o, n in st.errors.items()) or "-"
        print(f"{line}  {errors}")


def bench(args: argparse.Namespace, backend: str, database_url: str | None) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        upstream = None
        if "predict_flood" in args.attacks:
            upstream = stack.enter_context(fake_openai_upstream())
        server = stack.enter_context(running_server(database_url))
        result = run_phases(args, backend, server, upstream)
    return result


def run_phases(
    args: argparse.Namespace, backend: str, server: Server, upstream: str | None
) -> dict[str, Any]:
    victim_key = create_key(server, "victim", "training,production")
    probe_key = create_key(server, "victim", "training")  # own rate-limit budget
    with httpx.Client(base_url=server.url, headers={"X-API-Key": victim_key}) as http:
        job = http.post("/api/training/jobs", json={"id": JOB})
        job.raise_for_status()
        if upstream is not None:
            model = {"name": VICTIM_MODEL, "kind": "openai", "base_url": upstream}
            http.post("/api/models", json={**model, "upstream_model": "echo"}).raise_for_status()
    victim = Victim(
        VictimConfig(
            url=server.url,
            key=victim_key,
            job_id=JOB,
            job_token=job.json()["job_token"],
            timeout=args.victim_timeout,
            period=args.victim_period,
            ingest_period=args.ingest_period,
            predict_model=VICTIM_MODEL if upstream is not None else None,
        )
    )
    print(
        f"noisy neighbour ({backend}): the victim runs {', '.join(victim.ops)} "
        f"(ingest: 1,000-row batches); {args.seconds:g} s per phase"
    )
    victim.start()
    time.sleep(WARMUP_S)
    with victim.measuring("baseline"):
        time.sleep(args.seconds)
    base = phase_stats(victim.samples, "baseline")
    print_phase("baseline (no attack)", base, None)
    attacks: dict[str, Any] = {}
    for name in args.attacks:
        time.sleep(args.gap)
        # A fresh attacker per attack: one attack spending the key's rate budget must not turn
        # the next into a measurement of the rate limiter alone.
        attacker_key = create_key(server, f"attacker-{name}", "training,production")
        settings = AttackSettings(
            url=server.url,
            key=attacker_key,
            seconds=args.seconds,
            concurrency=args.concurrency,
            timeout=args.attack_timeout,
            regex_n=args.regex_n,
            text_chars=args.text_chars,
            unique_items=args.unique_items,
            body_mib=args.body_mib,
            flood_calls=args.flood_calls,
            flood_upstream_ms=args.flood_upstream_ms,
            upstream_url=upstream,
        )
        attacks[name] = attack_phase(args, name, settings, server, probe_key, victim, base)
        if server.process is not None and server.process.poll() is not None:
            print("    FAIL: the server died; remaining attacks skipped")
            attacks[name]["server_died"] = True
            break
    time.sleep(args.gap)
    with victim.measuring("control"):
        time.sleep(args.seconds)
    victim.stop()
    control = phase_stats(victim.samples, "control")
    control_ratios = ratio_rows(base, control)
    print_phase(
        "baseline again (control: ratios near 1x mean the machine held steady)",
        control,
        control_ratios,
    )
    rows = victim_rows(server, victim_key, victim)
    return {
        "backend": backend,
        "baseline": plain(base),
        "attacks": attacks,
        "control": {"victim": plain(control), "ratios": control_ratios},
        "victim_rows": rows,
    }


def attack_phase(
    args: argparse.Namespace,
    name: str,
    settings: AttackSettings,
    server: Server,
    probe_key: str,
    victim: Victim,
    base: dict[str, OpStats],
) -> dict[str, Any]:
    """Run one attack, wait for the server to settle, print and return the figures."""
    result = run_attack_process(name, settings, victim)
    trends = base["trends"]
    reference_s = max(2 * trends.p50_ms, trends.p99_ms) / 1e3
    settled, left = None, "nothing: the server died"
    if server.process is None or server.process.poll() is None:
        settled = settle(server.url, probe_key, reference_s, args.settle_max, args.victim_timeout)
        with httpx.Client(
            base_url=server.url, headers={"X-API-Key": settings.key}, timeout=settings.timeout
        ) as http:
            left = stored(name, http)
    memory = server_memory_mib(server)
    stats = phase_stats(victim.samples, name)
    ratios = ratio_rows(base, stats)
    print_phase(f"attack {name}", stats, ratios)
    if result["setup"]:
        print(f"    attacker: {result['setup']}")
    print(
        f"    attacker: {describe_shots(result['shots'])}; its last request ended "
        f"{result['drain_s']:.1f} s after the phase"
    )
    print(f"    stored: {left}")
    settled_text = f"{settled:.1f} s" if settled is not None else "NOT within the limit"
    memory_text = ""
    if memory is not None:
        memory_text = f"; server RSS {memory[0]:.0f} MiB (peak so far {memory[1]:.0f} MiB)"
    print(f"    server back to normal {settled_text} after that{memory_text}")
    outcome = {
        "setup": result["setup"],
        "outcomes": dict(Counter(o for o, _ in result["shots"])),
        "request_seconds": [round(s, 3) for _, s in result["shots"]],
        "drain_s": result["drain_s"],
        "stored": left,
        "settled_s": settled,
        "server_rss_mib": memory,
    }
    return {"victim": plain(stats), "ratios": ratios, "attack": outcome}


def victim_rows(server: Server, key: str, victim: Victim) -> dict[str, Any]:
    """Every acknowledged victim row must be stored (a timed-out batch may be, too)."""
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as http:
        stored_rows = http.get(f"/api/training/jobs/{JOB}").json()["prediction_count"]
    ok = victim.rows_acknowledged <= stored_rows <= victim.rows_sent
    print(
        f"  victim rows: {stored_rows:,} stored, {victim.rows_acknowledged:,} acknowledged, "
        f"{victim.rows_sent:,} sent  {verdict(ok)}"
    )
    return {
        "stored": stored_rows,
        "acknowledged": victim.rows_acknowledged,
        "sent": victim.rows_sent,
        "verdict": verdict(ok),
    }


def passed(run: dict[str, Any]) -> bool:
    verdicts = [run["victim_rows"]["verdict"]]
    for attack in run["attacks"].values():
        verdicts += [r["verdict"] for r in attack["ratios"].values()]
        if attack.get("server_died"):
            verdicts.append(verdict(False))
    return all(v == verdict(True) for v in verdicts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = []
    started = time.monotonic()
    if args.backend in ("sqlite", "both"):
        runs.append(bench(args, "sqlite", None))
    if args.backend in ("postgresql", "both"):
        with postgres_database() as url:
            if url is None:
                print("noisy neighbour: PostgreSQL 15 not installed; PostgreSQL run skipped")
            else:
                runs.append(bench(args, "postgresql", url))
    ok = all(passed(run) for run in runs)
    print(f"noisy neighbour: {verdict(ok)} ({time.monotonic() - started:.0f} s in all)")
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        machine = {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}
        args.json.write_text(
            json.dumps({"settings": settings, "machine": machine, "runs": runs}, indent=2)
        )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
