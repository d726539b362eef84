# The epoll backend: level-triggered, persistent registrations (see
# _io_epoll.py for the facts about epoll it relies on).

cdef enum:
    MAX_EVENTS = 1024              # epoll events taken per wait


@cython.final
cdef class EpollBackend(Backend):
    def __cinit__(self):
        self.epfd = -1
        self.name = "epoll"

    def __init__(self):
        self.events = <epoll_event *>PyMem_Malloc(MAX_EVENTS * sizeof(epoll_event))
        if self.events is NULL:
            raise MemoryError()
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise_errno(errno)

    def __dealloc__(self):
        PyMem_Free(self.events)
        if self.epfd >= 0:
            close_fd(self.epfd)

    cdef int watch(self, EventLoop loop, int fd, uint32_t mask, object owner) except -1:
        """An fd stays registered while the same socket object waits on it with
        the same interest, which saves an ``epoll_ctl`` per wait."""
        cdef epoll_event ev
        cdef FdSlot *slot
        cdef PyObject *old_owner = NULL
        cdef bint same_file
        fds_ensure(&loop.fds, fd)
        slot = &loop.fds.slots[fd]
        if registration_fits(slot, mask, owner):
            return 0
        if slot.owner is not NULL:
            old_owner = aioc_weakref_target(slot.owner)
        # A different owner: the old registration may have died with its file.
        same_file = (old_owner is not NULL and old_owner != <PyObject *>None
                     and fileno_of(<object>old_owner) == fd)
        ev.data.fd = fd
        if slot.registered and same_file:
            mask |= slot.registered
            ev.events = mask
            if epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev) < 0:
                if errno != ENOENT or epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
                    raise_errno(errno)
        else:
            ev.events = mask
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
                if errno != EEXIST or epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev) < 0:
                    raise_errno(errno)
        ref = owner_ref(owner)
        slot = &loop.fds.slots[fd]  # fileno_of() ran Python code: look again
        slot.registered = mask
        Py_CLEAR(slot.owner)
        if ref is not None:
            Py_INCREF(ref)
            slot.owner = <PyObject *>ref
        return 0

    cdef int unwatch(self, EventLoop loop, int fd, uint32_t mask) except -1:
        cdef epoll_event ev
        cdef uint32_t remaining = 0
        cdef int rc
        if fd < loop.fds.size:
            remaining = loop.fds.slots[fd].registered & ~mask
        ev.data.fd = fd
        ev.events = remaining
        if remaining:
            rc = epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
            if rc == 0:
                loop.fds.slots[fd].registered = remaining
        else:
            fds_forget_registration(&loop.fds, fd)
            rc = epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
        if rc < 0:
            # The fd was closed (or reused) while a dup keeps its old file
            # registered: epoll can no longer name that registration and
            # would report it forever.  Start from a fresh epoll instance.
            self.rebuild(loop)
        return 0

    cdef int forget(self, EventLoop loop, int fd) except -1:
        cdef epoll_event ev
        if fd < loop.fds.size and loop.fds.slots[fd].registered:
            fds_forget_registration(&loop.fds, fd)
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)  # fails only if already gone
        return 0

    cdef int rebuild(self, EventLoop loop) except -1:
        cdef epoll_event ev
        cdef int fd, epfd
        epfd = epoll_create1(EPOLL_CLOEXEC)
        if epfd < 0:
            raise_errno(errno)
        close_fd(self.epfd)
        self.epfd = epfd
        for fd in range(loop.fds.size):
            if loop.fds.slots[fd].registered:
                ev.events = loop.fds.slots[fd].registered
                ev.data.fd = fd
                if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
                    fds_forget_registration(&loop.fds, fd)
        return 0

    cdef int poll(self, EventLoop loop, double timeout) except -1:
        cdef int n, i
        cdef int ms = <int>ceil(timeout * 1000.0)
        if ms == 0:
            n = epoll_wait(self.epfd, self.events, MAX_EVENTS, 0)
        else:
            with nogil:
                n = epoll_wait(self.epfd, self.events, MAX_EVENTS, ms)
        if n < 0:
            if errno != EINTR:
                raise_errno(errno)
            PyErr_CheckSignals()  # runs Python signal handlers
            return 0
        for i in range(n):
            loop.dispatch_io(self.events[i].data.fd, self.events[i].events, ms > 0)
        return 0

    cdef int close(self) except -1:
        if self.epfd >= 0:
            close_fd(self.epfd)
            self.epfd = -1
        return 0
