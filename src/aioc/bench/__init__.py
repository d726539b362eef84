"""aioc's benchmark suite: ``python -m aioc.bench --help``.

Modules: :mod:`.cli` (the command), :mod:`.runner` (the orchestrator),
:mod:`.loadgen` (the load generator, on aioc's loop), :mod:`.servers` (the
Python servers), ``c_epoll_server.c`` with :mod:`.cserver` (the C reference),
:mod:`.scheduler` (in-process workloads), :mod:`.wrk` (the cross-check
client), :mod:`.summary`, :mod:`.report` and :mod:`.plot` (the results).
"""
