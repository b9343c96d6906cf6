"""The crash guard: supervisord's event listener, run inside supervisord's process tree as the
target user once supervisord is up. The restart policy is pure (it returns effects); the listener
does the I/O (events in, supervisord's XML-RPC and the run dir's files out).
"""
