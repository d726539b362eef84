# Streams, compiled: twins of aioc.streams' StreamBuffer and Stream, with the
# same names, methods and behaviour (aioc/streams.py is the specification).
#
# The buffer keeps its bytes in C memory.  On a raw socket, Stream's reads
# return a StreamRead, an event that is its own awaitable iterator
# (aioc.h): every time it is sent a value it computes its result from the
# buffer, so a read that the buffer can answer completes without yielding,
# and a readline that needs more bytes waits again without returning to
# Python.  The loop handles StreamRead by exact type: it waits for
# readability on the epoll registration it already holds and receives into
# the stream's buffer in C before the task resumes, which keeps a cancelled
# read's bytes.  A read that needs bytes waits before its first recv, as
# ReadEvent does: on a keep-alive connection the next request is rarely
# there yet, a recv that fails with EAGAIN is a wasted system call, and the
# wait on a kept registration costs none.  write is the compiled SendAll.  Everything else (TLS
# layers, sendfile, close) runs the pure methods on the compiled object.

cdef extern from "string.h" nogil:
    void *memmem(const void *haystack, size_t haystack_len, const void *needle, size_t needle_len)

_PureStream = _streams.Stream
cdef bytes NEWLINE = b"\n"
# What one receive asks for when the read gives no size, as a C constant.
cdef Py_ssize_t STREAM_CHUNK = _streams.DEFAULT_LIMIT

cdef enum:
    STREAM_READ = 0            # read(max_bytes)
    STREAM_READ_EXACTLY = 1    # read_exactly(n)
    STREAM_READ_UNTIL = 2      # read_until(separator, limit)
    KEEP_WHEN_EMPTY = 16384    # an emptied buffer up to this size keeps its memory


@cython.final
cdef class StreamBuffer:
    """The bytes a stream received and its reader has not consumed yet (in C memory)."""

    def __dealloc__(self):
        PyMem_Free(self.data)

    def __len__(self):
        return self.end - self.start

    cdef char *reserve(self, Py_ssize_t n) except NULL:
        """Room for ``n`` more bytes after the last one; where they go.

        The consumed prefix is reclaimed only when the room is needed, by
        moving the unconsumed bytes to the front.
        """
        cdef Py_ssize_t size = self.end - self.start
        cdef Py_ssize_t capacity
        cdef char *grown
        if self.data is not NULL and self.capacity - self.end >= n:
            return self.data + self.end  # never NULL: that is this method's error value
        if self.start:
            memmove(self.data, self.data + self.start, size)
            self.start, self.end = 0, size
            if self.capacity - size >= n:
                return self.data + size
        if n > PY_SSIZE_T_MAX - size:
            raise MemoryError()
        capacity = max(size + n, 2 * self.capacity, 256)
        grown = <char *>PyMem_Realloc(self.data, capacity)
        if grown is NULL:
            raise MemoryError()
        self.data, self.capacity = grown, capacity
        return self.data + size

    cdef int extend(self, const char *data, Py_ssize_t n) except -1:
        if n == 0:
            return 0
        memcpy(self.reserve(n), data, n)
        self.end += n
        return 0

    cdef Py_ssize_t find_in(self, const char *separator, Py_ssize_t width, Py_ssize_t begin, Py_ssize_t end) noexcept:
        """find() on C arguments, within the buffered bytes."""
        cdef const char *base = self.data + self.start
        cdef const char *found
        end = min(end, self.end - self.start)
        if begin < 0 or end - begin < width:
            return -1
        found = <const char *>memmem(base + begin, end - begin, separator, width)
        return found - base if found is not NULL else -1

    cdef bytes take_bytes(self, Py_ssize_t n):
        cdef bytes taken
        n = min(n, self.end - self.start)
        taken = PyBytes_FromStringAndSize(self.data + self.start, n)
        self.start += n
        if self.start == self.end:
            self.start = self.end = 0
            if self.capacity > KEEP_WHEN_EMPTY:  # idle streams hold no large buffers
                PyMem_Free(self.data)
                self.data, self.capacity = NULL, 0
        return taken

    def append(self, data):
        """Add received bytes at the end."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self.extend(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def find(self, separator, begin, end):
        """Where ``separator`` first lies wholly within ``[begin, end)``; -1 if nowhere."""
        cdef bytes needle = bytes(separator)
        if begin < 0 or end < 0:
            raise ValueError("begin and end must be zero or more")
        return self.find_in(PyBytes_AS_STRING(needle), PyBytes_GET_SIZE(needle), begin, end)

    def take(self, n):
        """Consume and return the first ``n`` bytes (all of them if fewer are buffered)."""
        if n < 0:
            raise ValueError(f"n must be zero or more, got {n}")
        return self.take_bytes(n)


@cython.final
cdef class Stream:
    """A buffered byte stream over a connected non-blocking socket.

    ``tls`` is an already-handshaken layer with generator methods
    ``receive``, ``send`` and ``close``; see :mod:`aioc.streams`.
    """

    def __init__(self, sock, *, tls=None):
        if sock.getblocking():
            sock.setblocking(False)
        self._sock = sock
        self._tls = tls
        self._buffer = StreamBuffer()
        self._eof = False
        self._closed = False
        self._peername = None

    def __repr__(self):
        return _PureStream.__repr__(self)

    socket = _PureStream.socket
    tls = _PureStream.tls
    peername = _PureStream.peername

    def read(self, max_bytes=_streams.DEFAULT_LIMIT):
        """Up to ``max_bytes``: the buffered bytes if any, else one receive; ``b''`` at end of stream."""
        if self._tls is not None:
            return _PureStream.read(self, max_bytes)
        return new_stream_read(self, STREAM_READ, checked_size(max_bytes, "max_bytes"), None)

    def read_exactly(self, n):
        """Exactly ``n`` bytes; :class:`IncompleteReadError` if the stream ends first."""
        if self._tls is not None:
            return _PureStream.read_exactly(self, n)
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be zero or more, got {n}")
        return new_stream_read(self, STREAM_READ_EXACTLY, n, None)

    def readline(self, limit=_streams.DEFAULT_LIMIT):
        """``read_until(b"\\n", limit)``."""
        if self._tls is not None:
            return _PureStream.readline(self, limit)
        return new_stream_read(self, STREAM_READ_UNTIL, checked_size(limit, "limit"), NEWLINE)

    def read_until(self, separator=b"\n", limit=_streams.DEFAULT_LIMIT):
        """The data up to and including ``separator``, which must lie within ``limit`` bytes."""
        if self._tls is not None:
            return _PureStream.read_until(self, separator, limit)
        if type(separator) is not bytes:
            separator = bytes(separator)
        if not separator:
            raise ValueError("the separator must not be empty")
        return new_stream_read(self, STREAM_READ_UNTIL, checked_size(limit, "limit"), separator)

    def write(self, data):
        """Hand every byte of ``data`` to the kernel, waiting while its buffer is full."""
        if self._tls is not None or self._closed:
            return _PureStream.write(self, data)
        return sendall(self._sock, data)

    _received = _PureStream._received
    _fill = _PureStream._fill
    sendfile = _PureStream.sendfile
    _file_descriptor = _PureStream.__dict__["_file_descriptor"]
    _copy_file = _PureStream._copy_file
    write_eof = _PureStream.write_eof
    close = _PureStream.close
    __aenter__ = _PureStream.__aenter__
    __aexit__ = _PureStream.__aexit__


# Not tracked by the GC, like ReadEvent: a read refers to its stream and its
# separator, and neither refers back to a read.
@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class StreamRead:
    """One read of a stream's bytes: ``read``, ``read_exactly`` or ``read_until``.

    Its own awaitable iterator: completes from the buffer when it can, and
    otherwise yields itself to wait for readability and a receive into the
    buffer.  ``_yield`` and ``_resume`` serve loops other than the compiled
    one, through the contract alone.
    """

    def __repr__(self):
        if self.kind == STREAM_READ:
            what = f"read({self.size})"
        elif self.kind == STREAM_READ_EXACTLY:
            what = f"read_exactly({self.size})"
        else:
            what = f"read_until({self.separator!r}, {self.size})"
        return f"<StreamRead {what} of {self.stream!r}>"

    def _yield(self, loop, task):
        check_driven(self)
        sock = self.stream._sock
        loop.wait_readable(sock.fileno(), self, task, sock)

    def _resume(self, loop, task):
        # A BlockingIOError here (a spurious wake-up) makes the loop wait again.
        self.stream._received(self.stream._sock.recv(self.receive_size(), _events._DONTWAIT))
        loop.reschedule(task, None)

    cdef inline Py_ssize_t receive_size(self) noexcept:
        # What the pure stream's _fill asks for: read() its max_bytes, the others one chunk.
        return self.size if self.kind == STREAM_READ else STREAM_CHUNK


cdef int check_driven(StreamRead read) except -1:
    """A read reaches the loop only through its own iterator (``yield from``, ``await``).

    Yielded directly, its result would be lost: the loop resumes the task
    with None, and only the iterator turns the buffer into the result.
    """
    if not read.suspended:
        raise TypeError(f"{read!r} must be awaited or run with 'yield from', not yielded")
    return 0


cdef inline Py_ssize_t checked_size(object size, str what) except -1:
    """A size above zero; the pure check raises the error for anything else."""
    cdef Py_ssize_t value = aioc_positive_size(size)
    return value if value > 0 else _streams.check_size(size, what)


cdef StreamRead new_stream_read(Stream stream, int kind, Py_ssize_t size, bytes separator):
    cdef StreamRead read = StreamRead.__new__(StreamRead)
    read.stream = stream
    read.kind = kind
    read.size = size
    read.separator = separator
    read.searched = 0
    read.suspended = False
    return read


cdef object step_stream_read(object obj):
    """The read's result if the buffer holds it, else the read itself (wait for more).

    The same decisions, in the same order, as aioc.streams.Stream's methods.
    """
    cdef StreamRead read = <StreamRead>obj
    cdef Stream stream = read.stream
    cdef StreamBuffer buffer = stream._buffer
    cdef Py_ssize_t available = buffer.end - buffer.start
    cdef Py_ssize_t end, index, width
    read.suspended = False
    if read.kind == STREAM_READ:
        if available or stream._eof:
            return buffer.take_bytes(min(read.size, available))
    elif read.kind == STREAM_READ_EXACTLY:
        if available >= read.size:
            return buffer.take_bytes(read.size)
        if stream._eof:
            raise _streams.IncompleteReadError(buffer.take_bytes(available), read.size)
    else:
        width = PyBytes_GET_SIZE(read.separator)
        end = min(available, read.size)
        index = buffer.find_in(PyBytes_AS_STRING(read.separator), width, read.searched, end)
        if index >= 0:
            return buffer.take_bytes(index + width)
        if end >= read.size:
            raise _streams.LimitOverrunError(f"no separator within {read.size} bytes", end)
        if stream._eof:
            if available:
                raise _streams.IncompleteReadError(buffer.take_bytes(available), None)
            return b""
        # Only the last width - 1 bytes can start a separator that the next bytes complete.
        read.searched = max(0, end - width + 1)
    if stream._closed:
        raise OSError(EBADF, "the stream is closed")
    read.suspended = True
    return read


cdef int stream_receive_for(EventLoop loop, StreamRead read, Task task) except -1:
    """recv() into a stream's buffer for a StreamRead; then the task steps the read again."""
    cdef Stream stream = read.stream
    cdef StreamBuffer buffer = stream._buffer
    cdef int fd = aioc_socket_fd(stream._sock)
    cdef Py_ssize_t size = read.receive_size()
    cdef char *into
    cdef ssize_t n
    if fd < 0:
        return loop.schedule_throw(task, os_error(EBADF))
    if size <= READ_BUFFER_SIZE:
        into = loop.read_buffer  # then copied: the buffer grows only by what arrived
    else:
        try:
            into = buffer.reserve(size)
        except MemoryError as exc:
            return loop.schedule_throw(task, exc)
    while True:
        n = recv(fd, into, size, MSG_DONTWAIT)
        if n >= 0:
            break
        if errno == EAGAIN:
            loop.yield_event(read, task)  # readiness was only a hint
            return 1
        if errno != EINTR:
            return loop.schedule_throw(task, os_error(errno))
        PyErr_CheckSignals()
    if n == 0:
        stream._eof = True
    elif into == loop.read_buffer:
        try:
            buffer.extend(into, n)
        except MemoryError as exc:
            return loop.schedule_throw(task, exc)
    else:
        buffer.end += n
    return loop.push(task, None)


Event.register(StreamRead)
aioc_make_stream_awaitable(StreamRead, <aioc_stream_step_fn>step_stream_read)
