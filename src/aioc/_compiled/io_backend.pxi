# The one interface of the backends (as trio's IO managers): the scheduler
# calls these and nothing else, whatever the backend.  The fd table belongs
# to the loop; a backend keeps in it only its registration state.

cdef class Backend:
    cdef int watch(self, EventLoop loop, int fd, uint32_t mask, object owner) except -1:
        raise NotImplementedError

    cdef int unwatch(self, EventLoop loop, int fd, uint32_t mask) except -1:
        raise NotImplementedError

    cdef int forget(self, EventLoop loop, int fd) except -1:
        raise NotImplementedError

    cdef int rebuild(self, EventLoop loop) except -1:
        raise NotImplementedError

    cdef int abandon(self, EventLoop loop, int fd, uint32_t mask) except -1:
        # epoll and select keep what they hold: the task is likely to wait
        # again, and a stale registration costs one idle wake-up at most.
        return 0

    cdef int poll(self, EventLoop loop, double timeout) except -1:
        raise NotImplementedError

    cdef int close(self) except -1:
        raise NotImplementedError


cdef Backend make_backend(object name):
    available = available_backends()
    if name is None:
        name = available[0]
    if name == "io_uring" and name not in available:
        raise ValueError(io_uring_unavailable(os.strerror(probe_io_uring())))
    if name not in available:
        raise ValueError(unknown_backend(name))
    if name == "epoll":
        return EpollBackend()
    if name == "io_uring":
        return IoUringBackend()
    return SelectBackend()


def available_backends():
    """The backends this build can run here, the default first.

    io_uring is offered only when a ring can be set up now: seccomp or the
    kernel.io_uring_disabled sysctl refuse it where the header exists.
    """
    backends = ("epoll", "select") if AIOC_HAVE_EPOLL else ("select",)
    return backends + ("io_uring",) if probe_io_uring() == 0 else backends
