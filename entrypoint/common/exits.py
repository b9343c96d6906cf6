"""Every exit code of the binary, named once: the README's "Exit codes of the init" table, as code.

Who uses it: every program of the binary, for the code it ends with (the boot and PID 1, the
crash guard's exit action, supervisord's standby, the operator tools). The README's table lists
the same codes; a test holds the two together. sysexits.h names are used where one fits, because
orchestrators and systemd units already know them (the gateway's own unit keeps 78 from restarts).
"""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0  # a clean stop; a tool's "yes"
    # The privilege drop could not be proven, or supervisord could not start; a tool's "no" (a
    # failing health check, a status without supervisord, a refused checkpoint or rollback).
    FAILED = 1
    USAGE = 64  # EX_USAGE: an unknown program name, subcommand or option
    # EX_DATAERR: an archive the application's own check refuses (damaged, or none of its own).
    DATA_ERROR = 65
    NO_INPUT = 66  # EX_NOINPUT: an archive that is not there or cannot be read
    # EX_UNAVAILABLE: what was asked needs a release this image does not run: one that makes
    # archives of its own, or the one the state belongs to (a backup must run that one).
    UNAVAILABLE = 69
    # EX_CANTCREAT: no room or no permission to write what was asked (a restore's staging, the
    # directory a backup writes into).
    CANT_CREATE = 73
    SOFTWARE = 70  # EX_SOFTWARE: an unexpected internal error (one `init_crashed` line)
    # EX_TEMPFAIL, "a temporary failure; the user is invited to retry later": the program was
    # refused, not misconfigured, so an orchestrator that restarts on failure tries again, and the
    # boot ledger holds the next boot if it keeps failing. No signal (128+N), missing (127) or
    # non-executable (126) command and no clean stop (0) can be mistaken for it.
    CRASH_LOOP = 75
    # EX_CONFIG: an invalid setting, a drop the container's capabilities cannot make, an init its
    # user cannot read; passed on from the program when it refused its configuration or state,
    # which no restart fixes (the gateway's systemd unit has RestartPreventExitStatus=78).
    CONFIG = 78
    NOT_EXECUTABLE = 126  # a one-off command that cannot be executed (a shell's code)
    NOT_FOUND = 127  # a one-off command that does not exist (a shell's code)
    SIGNALLED = 128  # + N: a one-off command killed by signal N; a boot stopped by signal N


def by_signal(signal_number: int) -> int:
    """The shell's code for a process ended by `signal_number` (143 for SIGTERM)."""
    return Exit.SIGNALLED + signal_number
