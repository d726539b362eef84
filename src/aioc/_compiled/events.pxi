# The built-in events, compiled.  Same constructors, fields and behaviour as
# in events.py: the loop handles their exact types in C (fastpaths.pxi);
# their Python methods, used by other loops and by subclasses, are the
# pure-Python ones.  Every field C reads is checked when it is assigned.

_ReadEvent = _events.ReadEvent
_WriteEvent = _events.WriteEvent
_SendAll = _events.SendAll
_AcceptEvent = _events.AcceptEvent
_ConnectEvent = _events.ConnectEvent
_RecvFrom = _events.RecvFrom
_SendTo = _events.SendTo
_Sleep = _events.Sleep
_Spawn = _events.Spawn
_Join = _events.Join


def _raise_thrown(typ, val=None, tb=None):
    # What gen.throw() passes on: an exception, or its class (and a value).
    exc = val if val is not None else typ
    if isinstance(exc, type):
        exc = exc()
    raise exc.with_traceback(tb) if tb is not None else exc


cdef class BuiltinEvent:
    """Base of the compiled built-in events; registered as an ``aioc.Event``.

    ReadEvent, SendAll, RecvFrom, SendTo and Sleep, made once per request,
    datagram or switch, are base types of their own instead: only a base
    type can keep a freelist.
    """

    def _yield(self, loop, task):
        raise NotImplementedError

    def _resume(self, loop, task):
        raise NotImplementedError


# Not tracked by the GC: a built-in event refers to a socket and data, never
# back to itself; a Python subclass gets its own GC support.
@cython.no_gc
@cython.freelist(64)
cdef class ReadEvent:
    """Wait until ``sock`` is readable, then receive up to ``nbytes``."""

    def __init__(self, sock, nbytes=DEFAULT_READ_SIZE):
        self.sock = sock
        cdef Py_ssize_t size = aioc_positive_size(nbytes)
        self._nbytes = size if size > 0 else check_nbytes(nbytes)  # raises the pure loop's error

    @property
    def nbytes(self):
        return self._nbytes

    @nbytes.setter
    def nbytes(self, nbytes):
        self._nbytes = check_nbytes(nbytes)

    _yield = _ReadEvent._yield
    _resume = _ReadEvent._resume


cdef class WriteEvent(BuiltinEvent):
    """Send what ``sock`` accepts of ``data`` in one call; resumes with the count."""

    def __init__(self, sock, data):
        self.sock = sock
        self.data = data

    _yield = _WriteEvent._yield
    _resume = _WriteEvent._resume


@cython.no_gc
@cython.freelist(64)
cdef class SendAll:
    """Send every byte of ``data``; resumes with its length in bytes."""

    def __init__(self, sock, data):
        self.sock = sock
        self._data = data if type(data) is bytes else as_send_buffer(data)

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, data):
        self._data = as_send_buffer(data)

    @property
    def sent(self):
        return self._sent

    @sent.setter
    def sent(self, sent):
        self._sent = check_sent(sent)

    _yield = _SendAll._yield
    _resume = _SendAll._resume


def sendall(sock, data):
    """``yield from sendall(sock, data)``: send all of ``data``, return its length."""
    cdef SendAll event = SendAll.__new__(SendAll)  # skips argument parsing
    event.sock = sock
    event._data = data if type(data) is bytes else as_send_buffer(data)
    return event


cdef class AcceptEvent(BuiltinEvent):
    """Accept a connection; resumes with ``(conn, address)``, ``conn`` non-blocking."""

    def __init__(self, sock):
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock

    _yield = _AcceptEvent._yield
    _resume = _AcceptEvent._resume


cdef class ConnectEvent(BuiltinEvent):
    """Connect ``sock`` to ``address`` without blocking; resumes with ``None``."""

    def __init__(self, sock, address):
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock
        self.address = address

    _yield = _ConnectEvent._yield
    _resume = _ConnectEvent._resume


@cython.no_gc
@cython.freelist(64)
cdef class RecvFrom:
    """Wait until ``sock`` is readable, then receive one datagram of up to ``max_bytes``."""

    def __init__(self, sock, max_bytes=DEFAULT_READ_SIZE):
        self.sock = sock
        cdef Py_ssize_t size = aioc_positive_size(max_bytes)
        self._max_bytes = size if size > 0 else check_nbytes(max_bytes, "max_bytes")

    @property
    def max_bytes(self):
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, max_bytes):
        self._max_bytes = check_nbytes(max_bytes, "max_bytes")

    _yield = _RecvFrom._yield
    _resume = _RecvFrom._resume


@cython.no_gc
@cython.freelist(64)
cdef class SendTo:
    """Send ``data`` as one datagram to ``address``; resumes with the count sent."""

    def __init__(self, sock, data, address):
        self.sock = sock
        self._data = data if type(data) is bytes else as_send_buffer(data)
        self._address = check_address(sock, address)

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, data):
        self._data = as_send_buffer(data)

    @property
    def address(self):
        return self._address

    @address.setter
    def address(self, address):
        self._address = check_address(self.sock, address)

    _yield = _SendTo._yield
    _resume = _SendTo._resume


@cython.freelist(64)
cdef class Sleep:
    """Resume after ``seconds``; ``Sleep(0)`` moves the task to the back of the queue."""

    def __init__(self, seconds):
        if type(seconds) is float:
            self._seconds = PyFloat_AS_DOUBLE(seconds)
            if self._seconds != self._seconds:
                raise ValueError("seconds must not be NaN")
        elif type(seconds) is int:
            self._seconds = PyLong_AsDouble(seconds)
        else:
            self._seconds = check_seconds(seconds)

    @property
    def seconds(self):
        return self._seconds

    @seconds.setter
    def seconds(self, seconds):
        self._seconds = check_seconds(seconds)

    _yield = _Sleep._yield
    _resume = _Sleep._resume


cdef class Spawn(BuiltinEvent):
    """Start ``coro`` as a new task; resumes with its Task."""

    def __init__(self, coro):
        self.coro = coro

    _yield = _Spawn._yield


cdef class Join(BuiltinEvent):
    """Wait for ``task``; resumes with its result or raises its exception."""

    def __init__(self, task):
        self.task = task

    _yield = _Join._yield
    _resume = _Join._resume


for _event_type in (BuiltinEvent, ReadEvent, SendAll, RecvFrom, SendTo, Sleep):
    Event.register(_event_type)

# Every compiled event is its own awaitable iterator (__await__, __iter__,
# __next__, send, throw, close): set on each type, since subtypes readied
# before this point do not inherit slots set later.
for _event_type in (BuiltinEvent, ReadEvent, WriteEvent, SendAll, AcceptEvent, ConnectEvent, RecvFrom, SendTo,
                    Sleep, Spawn, Join):
    aioc_make_awaitable(_event_type, _raise_thrown, Event.__await__)


cdef check_event_layout():
    # The C slots find `suspended` right after the object header.
    cdef Sleep sleep = Sleep(0)
    cdef ReadEvent read = ReadEvent(None)
    cdef SendAll send = SendAll(None, b"")
    cdef RecvFrom recv_from = RecvFrom(None)
    cdef SendTo send_to = SendTo(None, b"", None)
    cdef BuiltinEvent spawn = Spawn(None)
    sleep.suspended = read.suspended = send.suspended = spawn.suspended = True
    recv_from.suspended = send_to.suspended = True
    for event in (sleep, read, send, recv_from, send_to, spawn):
        if not aioc_event_suspended(event):
            raise ImportError(f"unexpected layout of {type(event).__name__}")


check_event_layout()
