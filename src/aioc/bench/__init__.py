"""aioc's benchmark suite: ``python -m aioc.bench --help``.

Modules: :mod:`.cli` (the command), :mod:`.runner` (the orchestrator),
:mod:`.loadgen` (the load generator, on aioc's loop; :mod:`.tlsload` its TLS
twin), :mod:`.servers` (the Python servers), ``c_epoll_server.c`` and
``c_io_uring_server.c`` over ``c_server_common.h``, built by :mod:`.cserver`
(the C references), :mod:`.scheduler` (in-process workloads), :mod:`.wrk`
(the cross-check client), :mod:`.summary`, :mod:`.report` and :mod:`.plot`
(the results).
"""
