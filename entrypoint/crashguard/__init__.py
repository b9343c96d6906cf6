"""The crash guard: inside supervisord's process, as a thread, as the target user, from
supervisord's start. supervisord loads it from its config (`plugin`: its events in, in order);
the restart policy is pure (`policy`: the state machine, `record`: what it keeps, `exits`: what an
exit nobody asked for leads to, `budget`: the backoff's arithmetic, `output`: the program's last
lines and their secrets, `facts` and `effects`: what comes in and what it asks for); the worker
(`runtime`) does the I/O (supervisord's XML-RPC, the memory cgroup, the program's CLI (`handoff`)
and the run dir's files).
"""
