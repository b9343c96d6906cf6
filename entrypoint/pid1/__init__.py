"""PID 1 after the boot, as the target user: the reaper (signals, zombies, exit codes), the two
modes (supervise under supervisord, or run a command once), supervisord's configuration and stop
deadline, and sd_notify. Also the code supervisord itself runs before its main loop (the waker).
"""
