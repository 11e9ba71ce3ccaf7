"""MLflow mirror and TensorBoard export benchmark: the time to sync 10 runs, to find nothing
to do on a second sync, to update one changed run, and to write TensorBoard events for 10.

    python benchmarks/mlflow_sync.py [--repeats 3] [--no-write]

Makes 10 completed runs (models 1-8 fine, 1 and 7 coarse) by copying the committed fixture
runs under distinct run ids (``stakeholder_reports.make_runs``), starts a local ``mlflow
server`` (SQLite backend, local artifact root, one worker, a free loopback port) and times the
commands as a user runs them, each a fresh ``cifar-core`` process (so Python, MLflow or
TensorFlow imports are included): ``mlflow-sync`` into a new experiment (10 created), the
same again (10 unchanged), again after one run gained an export manifest (1 updated), and
``tensorboard-export`` of the 10. Each is the median of ``--repeats`` (a new experiment for
each first sync; the very first one, on the just-started server, is shown on its own).
Writes the "mlflow-sync" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str, float]:
    """A local tracking server; (process, URI, seconds until /health answered)."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'db'}",
         "--artifacts-destination", str(root / "store"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    while time.perf_counter() - started < 180:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return process, uri, time.perf_counter() - started
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("mlflow server did not start within 180 s")


def timed(*args: str) -> tuple[float, str]:
    """Wall seconds of one ``cifar-core`` command, and its last output line."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "cifar-core"), *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cifar-core {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, (done.stdout.strip().splitlines() or [""])[-1]


def run(repeats: int) -> dict:
    from stakeholder_reports import make_runs

    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as scratch:
        scratch = Path(scratch)
        artifacts = make_runs(scratch / "artifacts")
        (scratch / "server").mkdir()
        process, uri, startup = start_server(scratch / "server")
        try:
            rows: dict[str, list[float]] = {"first": [], "again": [], "update": [],
                                            "tensorboard": []}
            outputs = {}
            exported = sorted((artifacts / "runs").iterdir())[0]
            for attempt in range(repeats):
                common = ["--tracking-uri", uri, "--experiment", f"bench-{attempt}",
                          "--artifacts", str(artifacts)]
                for key in ("first", "again"):
                    seconds, outputs[key] = timed("mlflow-sync", *common)
                    rows[key].append(seconds)
                (exported / "exports").mkdir(exist_ok=True)
                (exported / "exports" / "manifest.json").write_text(
                    f'{{"schema_version": 1, "exports": {{}}, "attempt": {attempt}}}')
                seconds, outputs["update"] = timed("mlflow-sync", *common)
                rows["update"].append(seconds)
                shutil.rmtree(exported / "exports")
                seconds, outputs["tensorboard"] = timed("tensorboard-export", "--artifacts",
                                                        str(artifacts))
                rows["tensorboard"].append(seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {"startup": startup, "rows": rows, "outputs": outputs}


def markdown(result: dict, repeats: int) -> str:
    from importlib import metadata

    from dashboard import environment_lines

    rows, outputs = result["rows"], result["outputs"]

    def cell(key, values=None):
        values = rows[key] if values is None else values
        if not values:
            return "-"
        return f"{statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"

    lines = [
        f"Generated by `python benchmarks/mlflow_sync.py --repeats {repeats}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC.",
        "",
        *environment_lines(),
        f"- MLflow {metadata.version('mlflow')}, TensorBoard {metadata.version('tensorboard')};"
        " a local `mlflow server` (SQLite backend, local artifact root, 1 worker) on loopback, "
        f"up after {result['startup']:.1f} s",
        "- 10 completed runs: copies of the committed fixture runs (models 1-8 fine, 1 and 7 "
        "coarse; one epoch each, no model.keras, so the artifacts are the three JSON/CSV "
        "files). Each time is a fresh `cifar-core` process (imports included), median of "
        f"{repeats}",
        "",
        "| command | what it did | wall time |",
        "|---|---|---|",
        f"| `mlflow-sync`, the server's first requests | {outputs['first']} | "
        f"{rows['first'][0]:.1f} s |",
        f"| `mlflow-sync`, new experiment, server warm | {outputs['first']} | "
        f"{cell('first', rows['first'][1:])} |",
        f"| `mlflow-sync` again | {outputs['again']} | {cell('again')} |",
        f"| `mlflow-sync` after one run gained exports/manifest.json | {outputs['update']} | "
        f"{cell('update')} |",
        f"| `tensorboard-export` (all 10 rewritten) | 10 event files | {cell('tensorboard')} |",
        "",
        "A just-started `mlflow server` spends several seconds on its first tracking request "
        "(it sets up its job scheduler then), so the very first sync is the slow one; after "
        "that a first sync costs a handful of requests per run (search, create, one "
        "`log_batch`, one upload per file, end, two tags), a second one only the search per "
        "run, and most of its time is the process starting and importing MLflow. "
        "`tensorboard-export` is mostly TensorFlow's import. The machine is shared with other "
        "work (the load average above), so these times are upper bounds.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    body = markdown(run(args.repeats), args.repeats)
    from dashboard import publish

    publish(body, "mlflow-sync", "TensorBoard export and MLflow sync: 10 runs", not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
