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

    cdef int poll(self, EventLoop loop, double timeout) except -1:
        raise NotImplementedError

    cdef int close(self) except -1:
        raise NotImplementedError


cdef Backend make_backend(object name):
    available = available_backends()
    if name is None:
        name = available[0]
    if name not in available:
        raise ValueError(unknown_backend(name))
    if name == "epoll":
        return EpollBackend()
    return SelectBackend()


def available_backends():
    """The backends this build can run, the default first."""
    return ("epoll", "select") if AIOC_HAVE_EPOLL else ("select",)
