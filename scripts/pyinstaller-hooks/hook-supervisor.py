"""PyInstaller hook for supervisor (used by scripts/build-binary).

supervisord imports modules named in its config at run time (the rpcinterface
factory `supervisor.rpcinterface:make_main_rpcinterface`, supervisorctl's
controller plugins), which static analysis cannot see: take every submodule but
the test suite. Its data (version.txt, read at start, and the web UI files) too.
"""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("supervisor", filter=lambda name: ".tests" not in name)
datas = collect_data_files("supervisor", excludes=["tests", "**/tests/**"])
