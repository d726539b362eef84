# The select backend: portable, stateless, fds below FD_SETSIZE.  Each poll
# builds its sets from the loop's fd table.

@cython.final
cdef class SelectBackend(Backend):
    def __cinit__(self):
        self.name = "select"

    cdef int watch(self, EventLoop loop, int fd, uint32_t mask, object owner) except -1:
        if fd >= SELECT_FD_LIMIT:
            raise ValueError(fd_too_large(fd))
        return 0

    cdef int unwatch(self, EventLoop loop, int fd, uint32_t mask) except -1:
        return 0

    cdef int forget(self, EventLoop loop, int fd) except -1:
        return 0

    cdef int rebuild(self, EventLoop loop) except -1:
        return 0

    cdef int poll(self, EventLoop loop, double timeout) except -1:
        cdef fd_set readable, writable
        cdef timeval tv
        cdef int fd, n, top = loop.wake_fd
        cdef uint32_t mask
        FD_ZERO(&readable)
        FD_ZERO(&writable)
        FD_SET(loop.wake_fd, &readable)
        for fd in range(min(loop.fds.size, SELECT_FD_LIMIT)):
            if loop.fds.slots[fd].reader_task is not NULL:
                FD_SET(fd, &readable)
                top = max(top, fd)
            if loop.fds.slots[fd].writer_task is not NULL:
                FD_SET(fd, &writable)
                top = max(top, fd)
        tv.tv_sec = <long>timeout
        tv.tv_usec = <long>((timeout - <double>tv.tv_sec) * 1e6)
        with nogil:
            n = select(top + 1, &readable, &writable, NULL, &tv)
        if n < 0:
            if errno == EINTR:
                PyErr_CheckSignals()
                return 0
            if errno != EBADF:
                raise_errno(errno)
            # Some waited-on fd was closed: report it as faulty, so that its
            # waiters' own I/O raises the real error.
            for fd in range(top + 1):
                if (FD_ISSET(fd, &readable) or FD_ISSET(fd, &writable)) and fcntl(fd, F_GETFD) < 0:
                    loop.dispatch_io(fd, FAULT, timeout > 0.0)
            return 0
        # Ascending fd order, as the pure select backend reports.
        for fd in range(top + 1):
            mask = (READABLE if FD_ISSET(fd, &readable) else 0) | (WRITABLE if FD_ISSET(fd, &writable) else 0)
            if mask:
                loop.dispatch_io(fd, mask, timeout > 0.0)
        return 0

    cdef int close(self) except -1:
        return 0
