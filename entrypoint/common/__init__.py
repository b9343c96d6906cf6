"""Contracts shared by the programs of the binary, and no process logic: settings, plans, users,
exit codes, the log schema, the startup report, the environment a program inherits, the run dir's
files and the one atomic writer, the crash guard's orders and state file, the boot ledger, the
standby's hand-over, supervisord's control-socket client, /proc and the fd-based kernel helpers.

Who uses it: every program of the binary, as whatever user it runs as, from its first line on;
each module says which programs are its parties ("Who uses it:"). Nothing here imports anything
else of ours.
"""
