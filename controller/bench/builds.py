"""The `build` benchmark: deploying from source, side by side with doing it by hand.

Called by `controller.bench.runner` (`berth bench run build`). It prints, in one run:
- source -> running: an INSERT with a git source until its container starts, against
  `git clone` + `docker build` + `docker run -d` of the same repository by hand (the same
  classic builder), interleaved trial by trial, each build from a commit of its own so that
  Docker's layer cache helps neither side;
- queue hand-off: one build's end to the next queued build's start;
- ten builds queued at concurrency 1 and at 2: total time, most builds seen running at
  once (must not exceed the limit), and priority inversions (must be 0); against ten
  `docker build`s by hand, one after another.
Everything it made (containers, images, repositories) is removed at the end.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.bench.scenarios import Row, print_rows

BY_HAND_ENV = {"DOCKER_BUILDKIT": "0"}  # the builder Berth uses
APP = "exec sleep 3600\n"


def run_checked(*args: str, cwd: Path | None = None) -> str:
    import os

    result = subprocess.run(
        list(args), cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, **BY_HAND_ENV},
    )  # fmt: skip
    return result.stdout.strip()


def git_in(repo: Path, *args: str) -> str:
    return run_checked(
        "git", "-C", str(repo), "-c", "user.email=b@berth", "-c", "user.name=bench", *args
    )


def commit_app(repo: Path, token: str, sleep_s: float) -> str:
    (repo / "Dockerfile").write_text(
        f"FROM {BENCH_IMAGE}\nRUN echo {token} && sleep {sleep_s}\nCOPY app.sh /app.sh\n"
        'CMD ["sh", "/app.sh"]\n'
    )
    (repo / "app.sh").write_text(APP)
    git_in(repo, "add", "-A")
    git_in(repo, "commit", "-q", "-m", token)
    return git_in(repo, "rev-parse", "HEAD")


def new_repo(folder: Path, name: str) -> Path:
    repo = folder / name
    repo.mkdir(parents=True)
    run_checked("git", "init", "-q", "-b", "main", str(repo))
    return repo


def _by_hand(repo: Path, commit: str, folder: Path, tag: str, name: str) -> float:
    """git clone, docker build, docker run -d: what an operator types."""
    started = time.monotonic()
    checkout = folder / f"hand-{uuid.uuid4().hex[:6]}"
    run_checked("git", "clone", "-q", f"file://{repo}", str(checkout))
    git_in(checkout, "checkout", "-q", commit)
    run_checked("docker", "build", "-q", "-t", tag, str(checkout))
    run_checked("docker", "run", "-d", "--name", name, "--label", f"berth-bench.run={tag}", tag)
    elapsed = time.monotonic() - started
    shutil.rmtree(checkout, ignore_errors=True)
    return elapsed


def source_to_running(env: Environment, trials: int) -> tuple[list[Row], list[str]]:
    run = uuid.uuid4().hex[:6]
    repo = new_repo(env.folder, "app")
    berth, hand = [], []
    events = env.docker.container_events()
    try:
        for trial in range(trials):
            for side in ("berth", "hand") if trial % 2 == 0 else ("hand", "berth"):
                commit = commit_app(repo, f"{side}-{run}-{trial}", 0.5)
                if side == "hand":
                    tag = f"berth-bench-hand/{run}:{trial}"
                    hand.append(
                        _by_hand(repo, commit, env.folder, tag, f"bench-hand-{run}-{trial}")
                    )
                    continue
                name = f"src-{trial}"
                source = {"git": {"url": f"file://{repo}", "ref": commit}}
                started = time.monotonic()
                env.sql(
                    "INSERT INTO deployments (name, source) VALUES (%s, %s)",
                    [name, json.dumps(source)],
                )
                for deployment, cluster, action in events:
                    if (deployment, cluster, action) == (name, env.cluster, "start"):
                        break
                berth.append(time.monotonic() - started)
    finally:
        env.docker.close_event_streams()
    _run_quietly("sh", "-c", "docker rm -f $(docker ps -aq --filter label=berth-bench.run)")
    _run_quietly("sh", "-c", f"docker rmi -f $(docker images -q 'berth-bench-hand/{run}')")
    label = "git clone + docker build + docker run"
    rows = [
        Row(
            f"source -> running, median of {trials}",
            percentile(berth, 0.5),
            percentile(hand, 0.5),
            label,
        ),
        Row(f"source -> running, max of {trials}", max(berth), max(hand), label),
    ]
    return rows, [f"  berth: {_figures(berth)}", f"  by hand: {_figures(hand)}"]


def _figures(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _run_quietly(*args: str) -> None:
    subprocess.run(list(args), check=False, capture_output=True)


def queue_of_ten(env: Environment, concurrency: int, count: int) -> dict[str, Any]:
    """`count` source deployments inserted at once, priorities mixed, at `concurrency`."""
    for process in env.processes:
        process.kill()
        process.wait(10)
    env.processes.clear()
    env.start_daemon(BERTH_BUILD_CONCURRENCY=str(concurrency))
    run = uuid.uuid4().hex[:6]
    names, sources, priorities = [], [], []
    generator = random.Random(concurrency)
    for index in range(count):
        repo = new_repo(env.folder, f"q{concurrency}-{index}")
        commit_app(repo, f"queue-{run}-{index}", 1)
        names.append(f"q{concurrency}-{index}")
        sources.append(json.dumps({"git": {"url": f"file://{repo}"}}))
        priorities.append(generator.choice((0, 5, 10)))
    started = time.monotonic()
    env.sql(
        "INSERT INTO deployments (name, source, priority) "
        "SELECT unnest(%s::text[]), unnest(%s::jsonb[]), unnest(%s::int[])",
        [names, sources, priorities],
    )
    poll(lambda: env.converged(names), timeout_s=900, interval_s=0.05)
    total = time.monotonic() - started
    builds = env.sql(
        "SELECT id, priority, queued_at, started_at, finished_at FROM builds "
        "WHERE deployment = ANY(%s) AND status = 'succeeded' ORDER BY started_at",
        [names],
    )
    env.clear()
    return {
        "total": total,
        "overlap": _max_overlap(builds),
        "inversions": _inversions(builds),
        "handoffs": _handoffs(builds, concurrency),
        "repos": [env.folder / name for name in names],
    }


def _handoffs(builds: list[dict[str, Any]], concurrency: int) -> list[float]:
    """For each build that had to wait for a slot: its start minus the end that freed it."""
    gaps = []
    for build in builds[concurrency:]:
        ends = [b["finished_at"] for b in builds if b["finished_at"] <= build["started_at"]]
        if ends:
            gaps.append((build["started_at"] - max(ends)).total_seconds())
    return gaps


def _max_overlap(builds: list[dict[str, Any]]) -> int:
    edges = sorted(
        [(b["started_at"], 1) for b in builds] + [(b["finished_at"], -1) for b in builds],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    running = highest = 0
    for _, change in edges:
        running += change
        highest = max(highest, running)
    return highest


def _inversions(builds: list[dict[str, Any]]) -> int:
    """Builds that started while a higher-priority build was already waiting."""
    return sum(
        1
        for a in builds
        for b in builds
        if b["priority"] > a["priority"] and b["queued_at"] < a["started_at"] < b["started_at"]
    )


def by_hand_sequential(env: Environment, repos: list[Path]) -> float:
    """The same number of `docker build`s, one after another (fresh commits: no cache)."""
    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    for index, repo in enumerate(repos):
        commit_app(repo, f"hand-{run}-{index}", 1)
        run_checked("docker", "build", "-q", "-t", f"berth-bench-hand/{run}:{index}", str(repo))
    elapsed = time.monotonic() - started
    _run_quietly("sh", "-c", f"docker rmi -f $(docker images -q 'berth-bench-hand/{run}')")
    return elapsed


def run(env: Environment, trials: int, queue_size: int) -> None:
    rows, details = source_to_running(env, trials)
    print_rows("build: source -> running (one build each, no layer cache)", rows)
    for line in details:
        print(line)
    env.clear()
    results = {c: queue_of_ten(env, c, queue_size) for c in (1, 2)}
    hand = by_hand_sequential(env, results[1]["repos"])
    one, two = results[1]["total"], results[2]["total"]
    print_rows(
        f"build: {queue_size} builds queued at once, priorities mixed",
        [
            Row(
                "total, BERTH_BUILD_CONCURRENCY=1", one, hand, f"{queue_size} docker builds by hand"
            ),
            Row("total, BERTH_BUILD_CONCURRENCY=2", two, one, "concurrency 1"),
        ],
    )
    for concurrency, result in results.items():
        handoffs = result["handoffs"] or [float("nan")]
        print(
            f"  concurrency {concurrency}: most running at once {result['overlap']} "
            f"(limit {concurrency}); priority inversions {result['inversions']}; hand-off "
            f"p50 {percentile(handoffs, 0.5):.3f}s, max {max(handoffs):.3f}s"
        )
    _run_quietly(
        "sh",
        "-c",
        f"docker rmi -f $(docker images -q --filter 'reference=berth-build/{env.cluster}-*')",
    )
