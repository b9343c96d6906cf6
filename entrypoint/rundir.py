"""The run dir's files, named once: the init, supervisord, the crash guard, `health` and `status`
are separate processes that find each other only through these names."""

SUPERVISOR_CONFIG = "supervisord.conf"
SUPERVISOR_SOCKET = "supervisor.sock"
STARTUP_REPORT = "startup-report.json"
# Written by the crash guard: the gateway's state as the restart policy sees it.
GUARD_STATE = "crashguard.json"
# Created by the init on SIGTERM/SIGINT: from then on nothing may restart the gateway.
STOPPING_MARKER = "stopping"
# Written by the crash guard when it refuses with the `exit` action: the init's exit code.
EXIT_CODE = "exit-code"
