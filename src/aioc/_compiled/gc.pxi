# Garbage-collector support for what the loop holds in C.  Cython's own
# tp_traverse sees the loop's object fields; these add the live tasks, the
# fd table, the timer heap and the ready ring, so that a loop dropped without close()
# while tasks wait (a cycle through task.loop) is found and reclaimed.

cdef int visit_held(PyObject *self, visitproc visit, void *arg) noexcept:
    cdef EventLoop loop = <EventLoop>self
    cdef int status = live_visit(loop, visit, arg)
    if status == 0:
        status = ring_visit(&loop.ready, visit, arg)
    if status == 0:
        status = timers_visit(&loop.timers, visit, arg)
    if status == 0:
        status = fds_visit(&loop.fds, visit, arg)
    return status


cdef void clear_held(PyObject *self) noexcept:
    # Only for a loop that is garbage: it is marked closed first, so that
    # nothing a finalizer runs can schedule on it again.
    cdef EventLoop loop = <EventLoop>self
    loop.closed = True
    loop.io_waiters = 0
    ring_clear(&loop.ready)
    timers_clear(&loop.timers)
    fds_clear(&loop.fds)
    live_clear(loop)


aioc_install_gc(EventLoop, visit_held, clear_held)
