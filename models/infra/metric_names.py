"""The farm's Prometheus metrics: names, labels, help texts and buckets, in one place.

deploy/grafana/farm-dashboard.json and deploy/prometheus/farm-alerts.yaml query
these names (tests/deploy checks them). Who exports what (docs/DEPLOY.md):

- the API computes the farm-wide gauges from Postgres when scraped (api/metrics.py);
- each worker counts what it renders and writes, and serves them on
  ``FARM_METRICS_PORT`` (worker/metrics.py). In embedded mode the API's own
  ``/metrics`` carries both, since the worker runs in the API process.
"""

from __future__ import annotations

# -- API: farm-wide gauges, read from Postgres on scrape ------------------------------

QUEUE_DEPTH = "farm_queue_depth"
QUEUE_DEPTH_HELP = "Shards queued in Postgres for the model (waiting for a worker)."
CELLS = "farm_cells"
CELLS_HELP = (
    "Cells by status: queued and running in unfinished jobs; done, failed and "
    "cancelled summed over all jobs (so delta() over a window is what finished in it)."
)

# -- Worker: counters and histograms of what this process rendered --------------------

IMAGES = "farm_images_total"
IMAGES_HELP = "Images rendered, uploaded and recorded, by model and bucket (WxH)."
RENDER_SECONDS = "farm_render_seconds"
RENDER_SECONDS_HELP = "Seconds of one pipeline call: a shard of one bucket (or one cell of it)."
UPLOAD_SECONDS = "farm_upload_seconds"
UPLOAD_SECONDS_HELP = "Seconds to store one PNG (S3 PUT, its retries included)."
GPU_MEMORY = "farm_gpu_memory_bytes"
GPU_MEMORY_HELP = "GPU memory allocated by torch in this worker, per CUDA device."
JOB_LATENCY = "farm_job_latency_seconds"
JOB_LATENCY_HELP = "Seconds from a job's submission to its last cell, observed as it finishes."
JOBS = "farm_jobs_total"
JOBS_HELP = "Jobs finished by this worker, by terminal status."
GPU_SECONDS = "farm_gpu_seconds_total"
GPU_SECONDS_HELP = (
    "GPU seconds of recorded cells (the ledger's numbers), by tenant (a hash of its id, "
    "or its name where its policy opts in), model and device."
)
ANALYSIS_SECONDS = "farm_analysis_seconds"
ANALYSIS_SECONDS_HELP = "Seconds of one image analyzer's call on a shard (screening)."
ANALYSIS_FAILURES = "farm_analysis_failures_total"
ANALYSIS_FAILURES_HELP = "Image analyzer calls that failed (a failed scorer leaves scores NULL)."
IMAGES_HELD = "farm_images_held_total"
IMAGES_HELD_HELP = "Images screening held (stored privately until an operator decides)."

# Bucket bounds include the alert thresholds of deploy/prometheus/farm-alerts.yaml
# (render 30 s, upload 5 s, job 2 h) so those quantiles are exact at the line.
RENDER_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600)
UPLOAD_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_LATENCY_BUCKETS_S = (
    1,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
)
