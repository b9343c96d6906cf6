"""The operator tools: `health` (the HEALTHCHECK and the probes), `status`, `checkpoints`, and
`backup`, the scheduled jobs' (a Kubernetes CronJob's pod, compose.backup.yml's service).

Who runs it: operators through `docker exec`, the engine's HEALTHCHECK and Kubernetes' probes, as
root or the target user, while the container runs (or after it stopped), each tool in a process of
its own that ends with it. They change nothing; they read the run dir's files and ask supervisord
and the program. `backup` alone writes, into its backups directory only (its module says where it
differs).
"""
