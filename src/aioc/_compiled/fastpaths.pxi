# C I/O for the built-in events, chosen by exact type: ReadEvent's recv,
# SendAll's send loop, AcceptEvent's accept and the datagram events' recvfrom
# and sendto run here without the socket module's Python layer, with the same
# outcomes as their _yield and _resume methods.
# Errors never escape: they are thrown into the task, as on the pure loop.

cdef enum:
    READ_BUFFER_SIZE = 65536       # recv lands here, then is copied to exact size

cdef extern from "Python.h":
    ctypedef int (*initproc)(object self, object args, PyObject *kwargs) except -1
    ctypedef struct TypeInitSlot "PyTypeObject":
        initproc tp_init
    # NULL with MemoryError set, to be checked as a value: a try block
    # would save and restore the exception state on every read.
    PyObject *new_bytes_or_null "PyBytes_FromStringAndSize"(const char *data, Py_ssize_t size)


cdef inline bint is_socket(object sock) noexcept:
    """Whether the loop may do ``sock``'s I/O itself, in C.

    Exact types only: a subclass may override recv, send or accept (as
    ssl.SSLSocket does), and its own methods must then run.
    """
    return socket_layout_known and (type(sock) is PySocketType or type(sock) is SocketType)


cdef inline bint is_inet_socket(object sock) noexcept:
    return is_socket(sock) and (aioc_socket_family(sock) == AF_INET or aioc_socket_family(sock) == AF_INET6)


cdef inline int socket_fd(object sock) except? -2:
    # sock.fileno() without the method call: -1 once the socket is closed.
    if socket_layout_known and isinstance(sock, SocketType):
        return aioc_socket_fd(sock)
    return sock.fileno()


cdef inline bint rewait_read(EventLoop loop, object sock, object event, Task task) except -1:
    """Wait to read ``sock`` (a ReadEvent's, a RecvFrom's or a stream's) where
    epoll already holds a fitting registration: no system call."""
    cdef FdSlot *slot
    cdef int fd
    if not is_socket(sock):
        return False
    fd = aioc_socket_fd(sock)
    if fd < 0 or fd >= loop.fds.size:
        return False
    slot = &loop.fds.slots[fd]
    if slot.reader_event is not NULL:
        return False
    if not registration_fits(slot, READABLE | (WRITABLE if slot.writer_task is not NULL else 0), sock):
        return False
    Py_INCREF(event)
    Py_INCREF(task)
    Py_INCREF(sock)
    slot.reader_event = <PyObject *>event
    slot.reader_task = <PyObject *>task
    slot.reader_owner = <PyObject *>sock
    task.wait_kind = WAIT_READ
    task.wait_fd = fd
    loop.io_waiters += 1
    return True


cdef int recv_for(EventLoop loop, ReadEvent event, Task task) except -1:
    """recv() for a ReadEvent: queue the bytes, wait again, or throw the error."""
    cdef int fd = aioc_socket_fd(event.sock)
    cdef ssize_t n
    cdef PyObject *made
    if fd < 0:
        return loop.schedule_throw(task, os_error(EBADF))
    while True:
        n = recv(fd, loop.read_buffer, event._nbytes, MSG_DONTWAIT)
        if n >= 0:
            break
        if errno == EAGAIN:  # EWOULDBLOCK is the same code on every supported system
            loop.yield_event(event, task)  # readiness was only a hint
            return 1
        if errno != EINTR:
            return loop.schedule_throw(task, os_error(errno))
        PyErr_CheckSignals()
    made = new_bytes_or_null(loop.read_buffer, n)
    if made is NULL:
        return throw_pending(loop, task)
    data = <object>made
    Py_DECREF(data)  # `data` holds its own reference now
    return loop.push(task, data)


cdef int throw_pending(EventLoop loop, Task task) except -1:
    """Throw the exception a C call just left pending (a MemoryError) into ``task``."""
    try:
        aioc_reraise()
    except MemoryError as exc:
        return loop.schedule_throw(task, exc)


cdef int recvfrom_for(EventLoop loop, RecvFrom event, Task task) except -1:
    """recvfrom() for a RecvFrom on an IPv4 or IPv6 socket: queue ``(data,
    address)``, wait again, or throw the error."""
    cdef sockaddr_storage address
    cdef socklen_t length
    cdef int fd = aioc_socket_fd(event.sock)
    cdef ssize_t n
    if fd < 0:
        return loop.schedule_throw(task, os_error(EBADF))
    while True:
        length = sizeof(address)
        n = recvfrom(fd, loop.read_buffer, event._max_bytes, MSG_DONTWAIT, <sockaddr *>&address, &length)
        if n >= 0:
            break
        if errno == EAGAIN:
            loop.yield_event(event, task)  # readiness was only a hint
            return 1
        if errno != EINTR:
            return loop.schedule_throw(task, os_error(errno))
        PyErr_CheckSignals()
    try:
        data = PyBytes_FromStringAndSize(loop.read_buffer, n)
        # A stream socket fills in no address: the socket module gives None.
        peer = aioc_inet_address(&address) if length > 0 else None
    except BaseException as exc:
        return loop.schedule_throw(task, exc)
    return loop.push(task, (data, peer))


cdef int send_to(EventLoop loop, SendTo event, Task task, bint resuming) except -1:
    """sendto() for a SendTo, as SendTo._yield (or, ``resuming``, _resume)
    does it: queue the count, wait for writability, or throw the error.

    In C only for an IPv4 or IPv6 socket and a numeric address; anything
    else (a host name to resolve, a Unix socket) goes to the Python methods.
    Returns 1 when a wake-up found the buffer still full.
    """
    cdef sockaddr_storage address
    cdef socklen_t length
    cdef Py_buffer view
    cdef const char *data
    cdef Py_ssize_t size
    cdef ssize_t n
    cdef int err = 0
    cdef bint is_bytes
    cdef object sock = event.sock
    if not (is_inet_socket(sock) and aioc_inet_sockaddr(event._address, aioc_socket_family(sock), &address, &length)):
        return loop.resume_guarded(event, task) if resuming else loop.yield_guarded(event, task)
    is_bytes = type(event._data) is bytes
    if is_bytes:
        data, size = PyBytes_AS_STRING(event._data), PyBytes_GET_SIZE(event._data)
    else:
        try:
            PyObject_GetBuffer(event._data, &view, PyBUF_SIMPLE)
        except BaseException as exc:  # a released memoryview, say
            return loop.schedule_throw(task, exc)
        data, size = <const char *>view.buf, view.len
    while True:
        # A closed socket's fd is -1: sendto() fails with EBADF, as the socket module's does.
        n = sendto(aioc_socket_fd(sock), data, size, MSG_DONTWAIT, <sockaddr *>&address, length)
        if n >= 0 or errno != EINTR:
            break
    if n < 0:
        err = errno
    if not is_bytes:
        PyBuffer_Release(&view)
    if err == 0:
        return loop.push(task, n) if resuming else loop.finish_at_once(task, n)
    if err != EAGAIN:
        return loop.schedule_throw(task, os_error(err))
    try:
        loop.wait_io(aioc_socket_fd(sock), True, event, task, sock)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        loop.schedule_throw(task, exc)
    return 1 if resuming else 0


cdef int accept_for(EventLoop loop, AcceptEvent event, Task task) except -1:
    """accept() for an AcceptEvent on an IPv4 or IPv6 listener, as
    AcceptEvent._resume does it, without the socket module's Python layer."""
    cdef object listener = event.sock
    cdef sockaddr_storage address
    cdef socklen_t length
    cdef int fd = aioc_socket_fd(listener)
    cdef int conn_fd, err
    if fd < 0:
        return loop.schedule_throw(task, os_error(EBADF))
    while True:
        length = sizeof(address)
        conn_fd = accept4(fd, <sockaddr *>&address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC)
        if conn_fd >= 0:
            break
        err = errno
        if err == EAGAIN:
            loop.yield_event(event, task)  # readiness was only a hint
            return 1
        if err == ECONNABORTED:  # the peer left first: not the server's problem
            return loop.yield_event(event, task)
        if err in ACCEPT_BACKOFF_ERRNOS:
            try:
                accept_backoff(loop, event, task, listener, os_error(err))
            except BaseException as exc:
                loop.schedule_throw(task, exc)
            return 0
        if err != EINTR:
            return loop.schedule_throw(task, os_error(err))
        PyErr_CheckSignals()
    try:
        conn = accepted_socket(listener, conn_fd)
    except BaseException as exc:
        close_fd(conn_fd)
        return loop.schedule_throw(task, exc)
    try:
        peer = aioc_inet_address(&address)
    except BaseException as exc:
        conn.close()
        return loop.schedule_throw(task, exc)
    return loop.push(task, (conn, peer))


cdef object accepted_socket(object listener, int conn_fd):
    conn = PySocketType.__new__(PySocketType)
    # SOCK_NONBLOCK in the type gives the object a timeout of 0 and leaves
    # its .type plain; accept4 made the fd itself non-blocking.
    args = (aioc_socket_family(listener), aioc_socket_type(listener) | SOCK_NONBLOCK,
            aioc_socket_proto(listener), conn_fd)
    # _socket.socket.__init__ through its slot: no method lookup, no wrapper.
    (<TypeInitSlot *>SocketType).tp_init(conn, args, NULL)
    conn._io_refs = 0  # what socket.socket.__init__ sets
    conn._closed = False
    return conn


cdef int send_all(EventLoop loop, SendAll event, Task task) except -1:
    """Send until done (and queue the task) or until the buffer is full (and
    wait for writability), as SendAll._yield does; errors are thrown in."""
    cdef Py_buffer view
    cdef const char *data
    cdef Py_ssize_t size
    cdef ssize_t n
    cdef int fd = aioc_socket_fd(event.sock)
    cdef int err = 0
    cdef bint is_bytes = type(event._data) is bytes
    # Checked in SendAll._yield's order: the count, the data, then the socket.
    if event._sent < 0:  # _sent is writable from Python: never index before the data
        try:
            check_sent(event._sent)  # raises the pure loop's error
        except ValueError as exc:
            return loop.schedule_throw(task, exc)
    if is_bytes:  # the common case, without the buffer protocol's bookkeeping
        data, size = PyBytes_AS_STRING(event._data), PyBytes_GET_SIZE(event._data)
    else:
        try:
            PyObject_GetBuffer(event._data, &view, PyBUF_SIMPLE)
        except BaseException as exc:  # a released memoryview, say
            return loop.schedule_throw(task, exc)
        data, size = <const char *>view.buf, view.len
    if fd < 0 and event._sent < size:
        err = EBADF  # what send() on a closed socket raises
    while err == 0 and event._sent < size:
        n = send(fd, data + event._sent, size - event._sent, MSG_DONTWAIT)
        if n >= 0:
            event._sent += n
        elif errno != EINTR:
            err = errno
            break
    if not is_bytes:
        PyBuffer_Release(&view)
    if err == 0:
        return loop.finish_at_once(task, event._sent)
    if err != EAGAIN:
        return loop.schedule_throw(task, os_error(err))
    try:
        if loop.uring is not None:
            loop.uring.start_send(loop, event, task, fd)  # the kernel sends the rest
        else:
            loop.wait_io(fd, True, event, task, event.sock)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        loop.schedule_throw(task, exc)
    return 0
