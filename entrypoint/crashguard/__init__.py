"""The crash guard: the restart policy supervisord lacks, inside supervisord's process.

Who runs it: supervisord's process, as the target user, from supervisord's start to its end:
supervisord loads `plugin` from its config and calls it in its main thread for each event; the
worker thread (`runtime`) does the rest. The policy is pure (`policy`: the state machine and its
transitions, on one page; `record`: what it keeps; `aftermath`: what an exit nobody asked for
leads to; `budget`: the backoff's arithmetic; `output`: the program's last lines and their
secrets; `lines`: what it says; `facts` and `effects`: what comes in and what it asks for); the
worker does the I/O (supervisord's XML-RPC, the memory cgroup, the program's CLI (`handoff`) and
the run dir's files).
"""
