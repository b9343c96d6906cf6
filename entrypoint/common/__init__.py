"""Contracts shared by the programs of the binary, and no process logic: settings, plans, users,
the log schema, the startup report, the environment a program inherits, the run dir's files and
the one atomic writer, the crash guard's state file, the boot ledger, and the fd-based kernel
helpers. Every process imports from here; nothing here imports anything else of ours.
"""
