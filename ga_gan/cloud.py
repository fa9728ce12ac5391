"""Checkpoints in a Google Cloud Storage bucket (`gs://`), checked before a run relies on them.

Three libraries touch a `gs://` checkpoint directory, and each finds its endpoint on its own:

- TensorStore (orbax's array writer) reads `TENSORSTORE_GCS_HTTP_URL`;
- gcsfs (etils.epath's `gs://` backend when TensorFlow is absent: folders, JSON metadata, the
  `commit_success.txt` marker, deletions for `max_to_keep`) reads `STORAGE_EMULATOR_HOST`;
- google-cloud-storage (orbax asks it whether the bucket has a hierarchical namespace, on every
  step listing) reads `STORAGE_EMULATOR_HOST`.

One setting, `STORAGE_EMULATOR_HOST`, is copied to TensorStore here, so no layer can write to
the real service while another writes to an emulator. Before any of them runs, one bounded
request through google-cloud-storage checks the endpoint, the credentials and the bucket, so a
wrong setting is one line and exit 2 within seconds, not minutes of retries (TensorStore retries
an unreachable endpoint for minutes; gcsfs for about a minute).

GCS has no rename: orbax writes a step straight into `<dir>/<step>/` and commits it by writing
`<step>/commit_success.txt` last. A step without that marker (a save killed mid-upload) is never
listed as a checkpoint, so a resume takes the last committed step.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ga_gan.errors import UserError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # gcsfs, google-cloud-storage
TENSORSTORE_ENV = "TENSORSTORE_GCS_HTTP_URL"  # TensorStore's gcs driver
CHECK_TIMEOUT_S = float(os.environ.get("GA_GAN_GCS_TIMEOUT", "20"))
METRICS = "metrics.jsonl"  # a copy of the run's metrics beside the checkpoint steps


def is_remote(path) -> bool:
    return "://" in str(path)


def is_gcs(path) -> bool:
    return str(path).startswith("gs://")


def endpoint() -> str | None:
    """The emulator/endpoint URL every layer uses (None: Google's own service)."""
    host = os.environ.get(EMULATOR_ENV, "")
    if host in ("", "default"):
        return None
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def configure_endpoint() -> str | None:
    """Point TensorStore at the endpoint gcsfs and google-cloud-storage use, and turn off
    gcsfs's listing cache.

    TensorStore reads its variable when a driver opens, so setting it here, before the first
    save or restore, is enough. gcsfs caches folder listings forever by default, but TensorStore
    writes the step's arrays behind its back and another machine may add or delete steps:
    orbax must list what is in the bucket now."""
    import fsspec
    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)
    if os.environ.get(EMULATOR_ENV) == "default":  # gcsfs's spelling of "none"; not the others'
        del os.environ[EMULATOR_ENV]
    url = endpoint()
    ts = os.environ.get(TENSORSTORE_ENV)
    if url is None:
        if ts:
            raise UserError(f"{TENSORSTORE_ENV}={ts} is set but {EMULATOR_ENV} is not: set "
                            f"{EMULATOR_ENV}={ts} so every storage layer uses that endpoint")
        return None
    if ts and ts.rstrip("/") != url.rstrip("/"):
        raise UserError(f"{EMULATOR_ENV}={url} and {TENSORSTORE_ENV}={ts} disagree: "
                        f"unset {TENSORSTORE_ENV} (ga-gan sets it from {EMULATOR_ENV})")
    os.environ[TENSORSTORE_ENV] = url
    # gcsfs's default filesystem first asks the storage-control gRPC service for the bucket's
    # layout (an emulator speaks only JSON/HTTP): use its plain JSON filesystem instead. Read
    # when gcsfs is imported, which happens after this (in the check below).
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    return url


def split(url: str) -> tuple[str, str]:
    """gs://bucket/a/b -> ("bucket", "a/b")."""
    rest = str(url)[len("gs://"):]
    bucket, _, path = rest.partition("/")
    if not bucket:
        raise UserError(f"checkpoint_dir {url} names no bucket (gs://BUCKET/PATH)")
    return bucket, path.strip("/")


_CHECKED: set[str] = set()  # buckets already found reachable by this process


def check_gcs(url: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Endpoint reachable, credentials found, bucket there: else one UserError, within timeout.

    The request runs in a daemon thread with a hard deadline, so not even a silent network
    (packets dropped, no refusal) can hold the run."""
    configure_endpoint()
    bucket, _ = split(url)
    if bucket in _CHECKED:
        return
    try:
        import gcsfs  # noqa: F401  (epath's gs:// backend, needed by orbax later)
        from google.cloud import storage
    except ImportError as e:
        raise UserError(f"gs:// checkpoints need the cloud extra: pip install "
                        f"'ga-gan[cloud]' ({e})") from None
    where = endpoint() or "storage.googleapis.com"
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_probe(storage, bucket, where, timeout)),
                              daemon=True)
    worker.start()
    worker.join(timeout + 5)
    if not result:
        raise UserError(f"cannot reach {where} for gs://{bucket}: no answer within "
                        f"{timeout + 5:g} s (check {EMULATOR_ENV} and the network)")
    if result[0] is not None:
        raise UserError(result[0])
    _CHECKED.add(bucket)


def _probe(storage, bucket: str, where: str, timeout: float) -> str | None:
    """None if the bucket answers; else why not, in one line."""
    import logging
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    # google-auth logs a warning of its own for each credential source it fails to find; the
    # one line below says it all
    logging.getLogger("google.auth").setLevel(logging.ERROR)
    try:
        storage.Client().get_bucket(bucket, timeout=timeout, retry=None)
        return None
    except auth.DefaultCredentialsError:
        return (f"no Google Cloud credentials for gs://{bucket}: run `gcloud auth "
                f"application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or run on a "
                f"VM with a service account (or set {EMULATOR_ENV} for an emulator)")
    except api.NotFound:
        return f"bucket gs://{bucket} does not exist at {where} (create it first)"
    except (api.Forbidden, api.Unauthorized) as e:
        return f"no access to gs://{bucket} at {where}: {_first_line(e)}"
    except Exception as e:  # connection refused, DNS, timeout, TLS, a non-GCS server
        return f"cannot reach {where} for gs://{bucket}: {type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


# --- metrics beside the checkpoints ------------------------------------------------------
def _metrics_url(ckpt_dir: str):
    from etils import epath
    return epath.Path(ckpt_dir) / METRICS


def upload_metrics(local: Path, ckpt_dir: str) -> None:
    """Copy the run's metrics.jsonl beside its checkpoints (one whole-object upload: a reader
    sees the old copy or the new one). Called before each save starts, so a committed step
    always has its metrics lines in the bucket."""
    local = Path(local)
    if local.exists():
        try:
            _metrics_url(ckpt_dir).write_bytes(local.read_bytes())
        except Exception as e:  # the checkpoints committed so far stay; say why in one line
            raise UserError(f"cannot upload {METRICS} to {ckpt_dir}: {type(e).__name__}: "
                            f"{_first_line(e)}") from None


def download_metrics(ckpt_dir: str, local: Path) -> bool:
    """On a machine whose --out has no metrics.jsonl, fetch the bucket's copy (the resume then
    drops lines past the checkpoint, as it does locally). True if one was fetched."""
    local, remote = Path(local), _metrics_url(ckpt_dir)
    try:
        if local.exists() or not remote.exists():
            return False
        data = remote.read_bytes()
    except Exception as e:
        raise UserError(f"cannot read {remote}: {type(e).__name__}: {_first_line(e)}") from None
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return True


def remove_tree(url: str) -> None:
    """Delete everything under a bucket path (`--restart`); nothing there is fine."""
    from etils import epath
    path = epath.Path(url)
    try:
        if path.exists():
            path.rmtree()
    except Exception as e:
        raise UserError(f"cannot clear {url}: {type(e).__name__}: {_first_line(e)}") from None
