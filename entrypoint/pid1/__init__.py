"""PID 1 after the boot: the reaper (signals, zombies, exit codes), the two modes (supervise under
supervisord, or run a command once), PID 1's side of supervisord (its standby, its config, its
stop deadline) and sd_notify.

Who runs it: the init as PID 1, as the target user (the boot has dropped privileges), from the end
of the boot until the container ends; its last act is the container's exit code.
"""
