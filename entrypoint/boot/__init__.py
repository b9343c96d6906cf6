"""The boot: the container's preparation, in the order `pipeline.py` states (the only place it is
written; everything else points there).

Who runs it: the init as PID 1, once per container start, after `start` has read the settings: as
root when started as root (the only code of the binary that ever runs as root) up to the privilege
drop, then as the target user; started as the target user, all of it as that user. Each phase is a
function from its part of the plan (`common/plans`) to a `PhaseResult`; no phase imports another,
and nothing here imports the programs that run after the boot.
"""
