"""The operator tools: `health` (the HEALTHCHECK and the probes), `status`, and the one client of
supervisord's control socket they share. Run by `docker exec`, the engine's health check or a
kubelet, as root or the target user, while the container runs; they change nothing.
"""
