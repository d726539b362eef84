# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled event loop.

Every rule comes from the pure-Python loop in ``_loop_py.py``, which remains
the readable specification; this module runs the same rules with the ready
queue, the waiting tables, the timer heap and the polling loop in C, calling
epoll (or select) directly.  Built-in events of this module get C fast paths
selected by exact type; any other object with ``_yield``/``_resume`` goes
through those Python methods, exactly as on the pure loop.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.weakref cimport PyWeakref_GetObject, PyWeakref_NewRef
from libc.errno cimport EAGAIN, EBADF, ECONNABORTED, EEXIST, EINTR, ENOENT, errno
from libc.math cimport ceil
from libc.stdint cimport uint32_t
from libc.string cimport memset
from posix.fcntl cimport F_GETFD, fcntl
from posix.time cimport timeval
from posix.unistd cimport close as close_fd

import _socket
import errno as errno_codes
import os
import signal
import socket
import threading
import time
import types
from collections import deque

from aioc import _loop_py
from aioc import events as _events
from aioc._loop_py import (
    MAX_POLL_TIMEOUT,
    SELECT_FD_LIMIT,
    TIMER_PRUNE_MIN,
    ZOMBIE_WAKEUPS,
    _default_exception_handler,
    _fileno,
    _not_an_event,
    _stale,
    logger,
)
from aioc.events import (
    DEFAULT_READ_SIZE,
    Cancelled,
    ClosedResourceError,
    Event,
    InvalidStateError,
    ResourceBusy,
    Timeout,
    timeout_after,
)

# The same public namespace as the pure loop's.
__all__ = _loop_py.__all__


cdef extern from "sys/epoll.h" nogil:
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "sys/select.h" nogil:
    ctypedef struct fd_set:
        pass
    void FD_ZERO(fd_set *s)
    void FD_SET(int fd, fd_set *s)
    int FD_ISSET(int fd, fd_set *s)
    int select(int nfds, fd_set *r, fd_set *w, fd_set *e, timeval *timeout)

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    struct sockaddr_storage:
        unsigned short ss_family
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int accept4(int fd, sockaddr *address, socklen_t *length, int flags)
    enum:
        MSG_DONTWAIT
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        AF_INET
        AF_INET6

cdef extern from "netinet/in.h":
    pass

cdef extern from "arpa/inet.h":
    pass

cdef extern from "time.h" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clock, timespec *ts)
    enum:
        CLOCK_MONOTONIC

cdef extern from *:
    """
    /* A socket object starts with its fd, family, type and protocol, right
       after the object header: the layout CPython's socket module has always
       had.  Checked at import. */
    typedef struct { PyObject_HEAD int sock_fd; int sock_family; int sock_type; int sock_proto; } aioc_socket_head;
    #define aioc_socket_fd(o) (((aioc_socket_head *)(o))->sock_fd)
    #define aioc_weakref_target(ref) PyWeakref_GET_OBJECT(ref)
    #define aioc_socket_family(o) (((aioc_socket_head *)(o))->sock_family)
    #define aioc_socket_type(o) (((aioc_socket_head *)(o))->sock_type)
    #define aioc_socket_proto(o) (((aioc_socket_head *)(o))->sock_proto)

    /* The (host, port) or (host, port, flowinfo, scope_id) that accept()
       returns, as the socket module builds it, with IPv4 hosts formatted
       here: glibc's inet_ntop goes through printf. */
    static PyObject *aioc_inet_address(const struct sockaddr_storage *address) {
        char host[INET6_ADDRSTRLEN];
        if (address->ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)address;
            const unsigned char *b = (const unsigned char *)&in->sin_addr;
            char *p = host;
            int i;
            for (i = 0; i < 4; i++) {
                unsigned v = b[i];
                if (v >= 100) *p++ = (char)('0' + v / 100);
                if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
                *p++ = (char)('0' + v % 10);
                if (i < 3) *p++ = '.';
            }
            return Py_BuildValue("(s#i)", host, (Py_ssize_t)(p - host), ntohs(in->sin_port));
        }
        if (address->ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
            if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)) == NULL)
                return PyErr_SetFromErrno(PyExc_OSError);
            return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                                 (unsigned int)ntohl(in6->sin6_flowinfo), (unsigned int)in6->sin6_scope_id);
        }
        PyErr_SetString(PyExc_ValueError, "not an internet address");
        return NULL;
    }

    /* A compiled event is its own awaitable iterator, so that `yield from
       event` and `await event` allocate nothing: the first send yields the
       event, the next returns the value the loop resumed the task with.
       Every compiled event type declares `suspended` as its first field. */
    typedef struct { PyObject_HEAD int suspended; } aioc_event_head;

    static PySendResult aioc_event_send(PyObject *self, PyObject *arg, PyObject **result) {
        aioc_event_head *event = (aioc_event_head *)self;
        event->suspended = !event->suspended;
        *result = event->suspended ? self : arg;
        Py_INCREF(*result);
        return event->suspended ? PYGEN_NEXT : PYGEN_RETURN;
    }

    static PyObject *aioc_event_next(PyObject *self) {
        PyObject *result;
        if (aioc_event_send(self, Py_None, &result) == PYGEN_NEXT) return result;
        Py_DECREF(result);
        return NULL;  /* exhausted: StopIteration without an object */
    }

    static PyObject *aioc_event_self(PyObject *self) {
        Py_INCREF(self);
        return self;
    }

    /* gen.throw() and gen.close() pass on to the iterator a coroutine is
       suspended in: the event forgets the suspension, then raises. */
    static PyObject *aioc_raise_thrown = NULL;

    static PyObject *aioc_event_throw(PyObject *self, PyObject *args) {
        ((aioc_event_head *)self)->suspended = 0;
        return PyObject_Call(aioc_raise_thrown, args, NULL);
    }

    static PyObject *aioc_event_close(PyObject *self, PyObject *unused) {
        ((aioc_event_head *)self)->suspended = 0;
        Py_RETURN_NONE;
    }

    static PyObject *aioc_event_self_method(PyObject *self, PyObject *unused) {
        return aioc_event_self(self);
    }

    static PyObject *aioc_event_next_method(PyObject *self, PyObject *unused) {
        PyObject *result = aioc_event_next(self);
        if (result == NULL && !PyErr_Occurred()) PyErr_SetNone(PyExc_StopIteration);
        return result;
    }

    /* For Python subclasses, which do not inherit am_send (CPython 3.11). */
    static PyObject *aioc_event_send_method(PyObject *self, PyObject *value) {
        PyObject *result, *stop;
        if (aioc_event_send(self, value, &result) == PYGEN_NEXT) return result;
        stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
        return NULL;
    }

    /* The slots' Python names, for explicit calls such as event.__await__(). */
    static PyMethodDef aioc_event_methods[] = {
        {"__await__", aioc_event_self_method, METH_NOARGS, "Return the event: it is its own iterator."},
        {"__iter__", aioc_event_self_method, METH_NOARGS, "Return the event: it is its own iterator."},
        {"__next__", aioc_event_next_method, METH_NOARGS, "Yield the event once, then stop."},
        {"send", aioc_event_send_method, METH_O, "Yield the event, then return the value it is resumed with."},
        {"throw", aioc_event_throw, METH_VARARGS, "Raise what is thrown into a coroutine suspended on this event."},
        {"close", aioc_event_close, METH_NOARGS, "Forget that a coroutine is suspended on this event."},
        {NULL, NULL, 0, NULL},
    };

    static PyAsyncMethods aioc_event_async = {aioc_event_self, NULL, NULL, aioc_event_send};

    /* One protocol for every compiled event type: only a base type can keep
       a freelist, so the hot events cannot inherit it from a common base. */
    static int aioc_make_awaitable(PyObject *type, PyObject *raise_thrown) {
        PyTypeObject *t = (PyTypeObject *)type;
        PyMethodDef *def;
        if (aioc_raise_thrown == NULL) {
            Py_INCREF(raise_thrown);
            aioc_raise_thrown = raise_thrown;
        }
        t->tp_iter = aioc_event_self;
        t->tp_iternext = aioc_event_next;
        t->tp_as_async = &aioc_event_async;
        for (def = aioc_event_methods; def->ml_name != NULL; def++) {
            PyObject *method = PyDescr_NewMethod(t, def);
            int failed = method == NULL || PyDict_SetItemString(t->tp_dict, def->ml_name, method) < 0;
            Py_XDECREF(method);
            if (failed) return -1;
        }
        PyType_Modified(t);
        return 0;
    }

    #define aioc_event_suspended(o) (((aioc_event_head *)(o))->suspended)

    /* Stepping a coroutine: 0 it yielded, 1 it returned, -1 it raised (the
       exception stays set).  Return values come without a StopIteration. */
    static int aioc_send(PyObject *coro, PyObject *arg, PyObject **result) {
        PySendResult status = PyIter_Send(coro, arg, result);
        if (status == PYGEN_ERROR) return -1;
        return status == PYGEN_RETURN;
    }

    static int aioc_throw(PyObject *coro, PyObject *exc, PyObject **result) {
        static PyObject *name = NULL;
        if (name == NULL && (name = PyUnicode_InternFromString("throw")) == NULL) return -1;
        *result = PyObject_CallMethodOneArg(coro, name, exc);
        if (*result != NULL) return 0;
        if (PyErr_ExceptionMatches(PyExc_StopIteration) && _PyGen_FetchStopIterationValue(result) == 0)
            return 1;
        return -1;
    }

    /* Hands Cython an exception that is already set, so that a try block catches it. */
    static int aioc_reraise(void) { return -1; }
    """
    int aioc_send(object coro, object arg, PyObject **result)
    int aioc_throw(object coro, object exc, PyObject **result)
    int aioc_reraise() except -1
    int aioc_socket_fd(object sock)
    PyObject *aioc_weakref_target(PyObject *ref)
    int aioc_socket_family(object sock)
    int aioc_socket_type(object sock)
    int aioc_socket_proto(object sock)
    object aioc_inet_address(const sockaddr_storage *address)
    int aioc_make_awaitable(object type, object raise_thrown) except -1
    int aioc_event_suspended(object event)


# What a blocked task waits on (Task.wait_kind).
cdef enum:
    WAIT_NONE = 0
    WAIT_READ = 1
    WAIT_WRITE = 2
    WAIT_TIMER = 3
    WAIT_JOIN = 4

cdef enum:
    MAX_EVENTS = 1024              # epoll events taken per wait
    READ_BUFFER_SIZE = 65536       # recv lands here, then is copied to exact size

cdef uint32_t FAULT = EPOLLERR | EPOLLHUP  # reported unasked: wakes reader and writer
cdef double MAX_TIMEOUT = MAX_POLL_TIMEOUT
cdef int FD_LIMIT = SELECT_FD_LIMIT
cdef int ZOMBIE_LIMIT = ZOMBIE_WAKEUPS
cdef Py_ssize_t PRUNE_MIN = TIMER_PRUNE_MIN
cdef type SocketType = _socket.socket
cdef type PySocketType = socket.socket
cdef object _GeneratorType = types.GeneratorType
cdef object _CoroutineType = types.CoroutineType


cdef inline double monotonic() noexcept nogil:
    # The clock of time.monotonic(), so deadlines mix with pure-Python events.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef object os_error(int code):
    # OSError() picks the subclass (ConnectionResetError, ...) from the code.
    return OSError(code, os.strerror(code))


cdef int raise_errno(int code) except -1:
    raise os_error(code)


cdef bint _socket_layout_known = False


cdef _check_socket_layout():
    global _socket_layout_known
    a, b = socket.socketpair()
    tcp = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _socket_layout_known = all(
            aioc_socket_fd(s) == s.fileno() and aioc_socket_family(s) == s.family
            and aioc_socket_type(s) == s.type and aioc_socket_proto(s) == s.proto
            for s in (a, b, tcp)
        )
    finally:
        a.close()
        b.close()
        tcp.close()
    _socket_layout_known = _socket_layout_known and aioc_socket_fd(a) == -1


_check_socket_layout()


def _socket_layout_ok():
    """Whether sockets' fds are read from the objects directly (else via fileno())."""
    return _socket_layout_known


cdef inline bint is_socket(object sock) noexcept:
    """Whether the loop may do ``sock``'s I/O itself, in C.

    Exact types only: a subclass may override recv, send or accept (as
    ssl.SSLSocket does), and its own methods must then run.
    """
    return _socket_layout_known and (type(sock) is PySocketType or type(sock) is SocketType)


cdef inline bint is_inet_socket(object sock) noexcept:
    return is_socket(sock) and (aioc_socket_family(sock) == AF_INET or aioc_socket_family(sock) == AF_INET6)


cdef inline int socket_fd(object sock) except? -2:
    # sock.fileno() without the method call: -1 once the socket is closed.
    if _socket_layout_known and isinstance(sock, SocketType):
        return aioc_socket_fd(sock)
    return sock.fileno()


@cython.final
cdef class ReadyQueue:
    """The ready queue: ``append((task, value))`` and ``len()`` for events."""

    def __cinit__(self):
        self.capacity = 256
        self.items = <PyObject **>PyMem_Malloc(2 * self.capacity * sizeof(PyObject *))
        if self.items is NULL:
            raise MemoryError()

    def __dealloc__(self):
        self.clear()
        PyMem_Free(self.items)

    cdef int grow(self) except -1:
        cdef Py_ssize_t i, src, capacity = self.capacity * 2
        cdef PyObject **items = <PyObject **>PyMem_Malloc(2 * capacity * sizeof(PyObject *))
        if items is NULL:
            raise MemoryError()
        for i in range(self.count):
            src = ((self.head + i) & (self.capacity - 1)) * 2
            items[2 * i] = self.items[src]
            items[2 * i + 1] = self.items[src + 1]
        PyMem_Free(self.items)
        self.items = items
        self.capacity = capacity
        self.head = 0
        return 0

    cdef inline int push(self, object task, object value) except -1:
        cdef Py_ssize_t slot
        if self.count == self.capacity:
            self.grow()
        slot = ((self.head + self.count) & (self.capacity - 1)) * 2
        Py_INCREF(task)
        Py_INCREF(value)
        self.items[slot] = <PyObject *>task
        self.items[slot + 1] = <PyObject *>value
        self.count += 1
        return 0

    cdef inline void pop(self, PyObject **task, PyObject **value) noexcept:
        # Hands the queue's references to the caller.
        cdef Py_ssize_t slot = self.head * 2
        task[0] = self.items[slot]
        value[0] = self.items[slot + 1]
        self.head = (self.head + 1) & (self.capacity - 1)
        self.count -= 1

    cdef void clear(self) noexcept:
        cdef PyObject *task
        cdef PyObject *value
        while self.count:
            self.pop(&task, &value)
            Py_DECREF(<object>task)
            Py_DECREF(<object>value)

    def append(self, pair):
        task, value = pair
        if type(task) is not Task:
            raise TypeError(f"the ready queue takes (task, value) pairs, got {pair!r}")
        self.push(task, value)

    def __len__(self):
        return self.count


# No freelist: a recycled object keeps the GC header's "finalized" bit, and
# __del__ (the report of a never-retrieved exception) would not run again.
@cython.final
cdef class Task:
    """A coroutine run by the loop (created by ``EventLoop.call_soon``)."""

    def done(self):
        return self.finished

    def result(self):
        """The coroutine's return value; raises its exception instead if it had one."""
        if not self.finished:
            raise InvalidStateError("task is not done")
        self.log_exception = False
        if self.error is not None:
            raise self.error
        return self.value

    def exception(self):
        if not self.finished:
            raise InvalidStateError("task is not done")
        self.log_exception = False
        return self.error

    def cancel(self):
        """Throw :class:`Cancelled` into the task at its current yield."""
        if self.finished:
            return False
        self.loop.cancel_task(self)
        return True

    def cancelled(self):
        return self.finished and isinstance(self.error, Cancelled)

    def __repr__(self):
        name = getattr(self.coro, "__qualname__", type(self.coro).__name__)
        state = "pending" if not self.finished else "cancelled" if self.cancelled() else "done"
        return f"<Task {name} {state}>"

    def __del__(self):
        if self.log_exception:
            self.loop.call_exception_handler(
                {"message": "Task exception was never retrieved", "exception": self.error, "task": self}
            )


@cython.final
cdef class EventLoop:
    """Runs generator coroutines (and ``async def`` coroutines) that yield events.

    ``backend`` is ``"epoll"`` (the default) or ``"select"``.
    """

    ACCEPT_BACKOFF_ERRNOS = frozenset({errno_codes.EMFILE, errno_codes.ENFILE,
                                       errno_codes.ENOBUFS, errno_codes.ENOMEM})
    ACCEPT_BACKOFF = 0.1

    def __cinit__(self):
        self.epfd = -1
        self.wake_fd = -1
        self.polls = 1  # so that a slot's kept_at of 0 means "never kept"

    def __init__(self, backend=None):
        if backend is None:
            backend = "epoll"
        if backend not in ("epoll", "select"):
            raise ValueError(f"unknown or unavailable backend {backend!r}; choose 'epoll' or 'select'")
        self.backend = backend
        self.use_epoll = backend == "epoll"
        self._ready = ReadyQueue()
        self.threadsafe = deque()
        self.read_buffer = <char *>PyMem_Malloc(READ_BUFFER_SIZE)
        self.events = <epoll_event *>PyMem_Malloc(MAX_EVENTS * sizeof(epoll_event))
        if self.read_buffer is NULL or self.events is NULL:
            raise MemoryError()
        # Another thread (or a signal) wakes a blocked poll through this pair.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.wake_fd = self.wake_r.fileno()
        if not self.use_epoll and self.wake_fd >= SELECT_FD_LIMIT:
            raise ValueError(f"file descriptor {self.wake_fd} is too large for the select backend")
        if self.use_epoll:
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                raise_errno(errno)
            self.watch(self.wake_fd, EPOLLIN, self.wake_r)

    def __dealloc__(self):
        cdef int fd
        cdef Py_ssize_t i
        for fd in range(self.nfds):
            Py_XDECREF(self.fds[fd].reader_event)
            Py_XDECREF(self.fds[fd].reader_task)
            Py_XDECREF(self.fds[fd].writer_event)
            Py_XDECREF(self.fds[fd].writer_task)
            Py_XDECREF(self.fds[fd].owner)
        PyMem_Free(self.fds)
        for i in range(self.ntimers):
            Py_XDECREF(self.timers[i].task)
            Py_XDECREF(self.timers[i].event)
            PyMem_Free(self.timers[i])
        PyMem_Free(self.timers)
        PyMem_Free(self.read_buffer)
        PyMem_Free(self.events)
        if self.epfd >= 0:
            close_fd(self.epfd)

    # -- public API ---------------------------------------------------------

    @property
    def _num_tasks(self):
        return self.live_count

    def time(self):
        """The loop's clock: ``time.monotonic()``."""
        return monotonic()

    cpdef Task call_soon(self, coro):
        """Schedule ``coro`` (a generator or coroutine) as a new task."""
        if self.closed:
            raise RuntimeError("the event loop is closed")
        cdef Task task = self.new_task(coro)
        self.schedule_new(task)
        return task

    def call_soon_threadsafe(self, coro):
        """Like :meth:`call_soon`, from any thread; wakes a blocked poll."""
        if self.closed:
            raise RuntimeError("the event loop is closed")
        task = self.new_task(coro)
        self.threadsafe.append(task)
        self._wake()
        return task

    def run_forever(self):
        """Run until no task remains or :meth:`stop` is called."""
        self._run(None)

    def run_until_complete(self, coro):
        """Run ``coro`` (or a Task of this loop) to its end and return its result."""
        cdef Task task
        # Refuse before scheduling: a refused coroutine must not run later.
        if self.closed:
            raise RuntimeError("the event loop is closed")
        if self.running:
            raise RuntimeError("the event loop is already running")
        if isinstance(coro, Task) and (<Task>coro).loop is self:
            task = coro
        else:
            task = self.call_soon(coro)
        self._run(task)
        if not task.finished:
            raise RuntimeError("the loop stopped before the task finished")
        return task.result()

    def stop(self):
        """Make the running loop return after its current pass.  Thread-safe."""
        self.stopping = True
        self._wake()

    def is_running(self):
        return self.running

    def is_closed(self):
        return self.closed

    def close(self):
        """Close every unfinished coroutine (its ``finally`` blocks run), then the poller."""
        if self.closed:
            return
        if self.running:
            raise RuntimeError("cannot close a running loop")
        self.closed = True
        while self.threadsafe:
            self.schedule_new(self.threadsafe.popleft())
        while self.live_head is not None:
            self._close_task(self.live_head)
        self._ready.clear()
        self.clear_timers()
        if self.epfd >= 0:
            close_fd(self.epfd)
            self.epfd = -1
        self.wake_r.close()
        self.wake_w.close()

    def close_socket(self, sock):
        """Close ``sock`` and throw :class:`ClosedResourceError` into its waiters."""
        cdef int fd = sock.fileno()
        cdef PyObject *waiter
        if 0 <= fd < self.nfds:
            for writing in (False, True):
                waiter = self.fds[fd].writer_task if writing else self.fds[fd].reader_task
                if waiter is not NULL:
                    task = <Task>waiter
                    self.unwait(task)
                    self.schedule_throw(task, ClosedResourceError())
            self.forget(fd)
        sock.close()

    def set_exception_handler(self, handler):
        """``handler(loop, context)`` receives errors nobody else will see."""
        self.exception_handler = handler

    def call_exception_handler(self, context):
        handler = self.exception_handler or _default_exception_handler
        try:
            handler(self, context)
        except Exception:
            logger.exception("Exception in the exception handler")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- protected API used by events ------------------------------------------

    def _read_wait(self, fd, event, Task task):
        self.wait_io(_check_fd(fd), False, event, task)

    def _write_wait(self, fd, event, Task task):
        self.wait_io(_check_fd(fd), True, event, task)

    def _timer_wait(self, double deadline, event, Task task):
        """Call ``event._resume(loop, task)`` at ``deadline`` (monotonic seconds)."""
        self.wait_timer(deadline, event, task)

    def _join_wait(self, target, event, Task task):
        """Call ``event._resume(loop, task)`` when ``target`` finishes."""
        self.wait_join(target, event, task)

    def _set_deadline(self, Task task, double deadline):
        """Throw TimeoutError into ``task`` if it is still blocked at ``deadline``."""
        self.arm_deadline(task, deadline)

    def _accept_backoff(self, event, Task task, exc):
        if not self.accept_backoff_logged:
            self.accept_backoff_logged = True
            logger.warning("accept() failed (%s); retrying every %.1f s", exc, self.ACCEPT_BACKOFF)
        self.wait_timer(monotonic() + self.ACCEPT_BACKOFF, event, task)

    # -- running -----------------------------------------------------------------

    def _wake(self):
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self, Task until):
        if self.closed:
            raise RuntimeError("the event loop is closed")
        if self.running:
            raise RuntimeError("the event loop is already running")
        self.running = True
        self.stopping = False
        old_wakeup_fd = None
        # A signal that lands just before the poll blocks would otherwise be
        # noticed only when the poll returns on its own.
        if threading.current_thread() is threading.main_thread():
            old_wakeup_fd = signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        try:
            while not self.stopping:
                if until is not None:
                    if until.finished:
                        break
                elif self.live_count == 0 and not self.threadsafe:
                    break
                self.run_once()
        finally:
            if old_wakeup_fd is not None:
                signal.set_wakeup_fd(old_wakeup_fd)
            self.running = False
            self.stopping = False

    cdef int run_once(self) except -1:
        cdef double timeout
        cdef Py_ssize_t n
        cdef PyObject *task_ptr
        cdef PyObject *value_ptr
        cdef Task task
        if self._ready.count:
            timeout = 0.0
        elif self.ntimers:
            timeout = min(max(self.timers[0].deadline - monotonic(), 0.0), MAX_TIMEOUT)
        else:
            timeout = MAX_TIMEOUT
        # A zero-timeout poll is pointless when no task waits on I/O.
        if timeout > 0.0 or self.io_waiters:
            if self.use_epoll:
                self.poll_epoll(timeout)
            else:
                self.poll_select(timeout)
        if self.threadsafe:
            while self.threadsafe:
                self.schedule_new(self.threadsafe.popleft())
        if self.ntimers:
            self.fire_timers()
        # A snapshot: what the steps schedule runs next pass, after a poll.
        n = self._ready.count
        while n:
            n -= 1
            self._ready.pop(&task_ptr, &value_ptr)
            task = <Task>task_ptr
            value = <object>value_ptr
            Py_DECREF(task)  # the locals now hold the queue's references
            Py_DECREF(value)
            self.step(task, value)
        return 0

    cdef Task new_task(self, object coro):
        cdef type kind = type(coro)
        if kind is not _GeneratorType and kind is not _CoroutineType:
            if not (hasattr(coro, "send") and hasattr(coro, "throw")):
                raise TypeError(f"expected a generator or coroutine, got {coro!r}")
        cdef Task task = Task.__new__(Task)
        task.coro = coro
        task.loop = self
        return task

    cdef int schedule_new(self, Task task) except -1:
        # Linked in creation order, so close() can reach every live task.
        task.prev_live = self.live_tail
        if self.live_tail is None:
            self.live_head = task
        else:
            self.live_tail.next_live = task
        self.live_tail = task
        self.live_count += 1
        return self._ready.push(task, None)

    cdef int step(self, Task task, object value) except -1:
        cdef PyObject *result = NULL
        cdef int status
        if task.finished:
            return 0  # a stale entry: the task was ended while it sat in the queue
        if task.deadline is not NULL:
            self.cancel_timer(task.deadline)
            task.deadline = NULL
        self.current = <PyObject *>task
        if task.throw_next is None:
            status = aioc_send(task.coro, value, &result)
        else:
            error = task.throw_next
            task.throw_next = None
            status = aioc_throw(task.coro, error, &result)
        self.current = NULL
        if status < 0:
            return self.step_raised(task)
        event = <object>result
        Py_DECREF(event)  # the send handed us a reference; `event` holds its own
        if status == 1:
            self.finish(task, event, None)
        elif task.throw_next is not None:
            self._ready.push(task, None)  # cancelled while it ran
        else:
            self.yield_event(event, task)
        return 0

    cdef int step_raised(self, Task task) except -1:
        # The task's coroutine raised: the exception is still pending here.
        try:
            aioc_reraise()
        except (KeyboardInterrupt, SystemExit) as exc:
            self.finish(task, None, exc)
            task.log_exception = False  # it propagates to run_forever's caller
            raise
        except BaseException as exc:
            self.finish(task, None, exc)
        return 0

    cdef int yield_event(self, object event, Task task) except -1:
        # The common cases first, with errors handled as values: a Cython
        # try block costs a thread-state lookup on every pass.
        cdef type kind = type(event)
        if kind is Sleep and (<Sleep>event).seconds <= 0.0:
            return self._ready.push(task, None)
        if kind is ReadEvent and self.rewait_read(<ReadEvent>event, task):
            return 0
        if kind is SendAll and is_socket((<SendAll>event).sock):
            return self.send_all(<SendAll>event, task)
        return self.yield_guarded(event, task)

    cdef int yield_guarded(self, object event, Task task) except -1:
        cdef type kind = type(event)
        cdef double seconds
        try:
            if kind is ReadEvent:
                self.wait_io(socket_fd((<ReadEvent>event).sock), False, event, task)
            elif kind is Sleep:
                seconds = (<Sleep>event).seconds
                if seconds <= 0.0:
                    self._ready.push(task, None)
                else:
                    self.wait_timer(monotonic() + seconds, event, task)
            elif kind is Spawn:
                self._ready.push(task, self.call_soon((<Spawn>event).coro))
            elif kind is Join:
                self.wait_join((<Join>event).task, event, task)
            elif kind is AcceptEvent:
                self.wait_io(socket_fd((<AcceptEvent>event).sock), False, event, task)
            else:
                method = getattr(event, "_yield", None)
                if method is None:
                    self.schedule_throw(task, _not_an_event(task, event))
                else:
                    method(self, task)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.unwait(task)
            self.schedule_throw(task, exc)
        return 0

    cdef bint rewait_read(self, ReadEvent event, Task task) except -1:
        """Wait to read where epoll already holds a fitting registration: no syscall."""
        cdef object sock = event.sock
        cdef FdSlot *slot
        cdef int fd
        if not self.use_epoll or not is_socket(sock):
            return False
        fd = aioc_socket_fd(sock)
        if fd < 0 or fd >= self.nfds:
            return False
        slot = &self.fds[fd]
        if slot.reader_event is not NULL:
            return False
        if not registration_fits(slot, EPOLLIN | (EPOLLOUT if slot.writer_task is not NULL else 0), sock):
            return False
        Py_INCREF(event)
        Py_INCREF(task)
        slot.reader_event = <PyObject *>event
        slot.reader_task = <PyObject *>task
        task.wait_kind = WAIT_READ
        task.wait_fd = fd
        self.io_waiters += 1
        return True

    cdef int resume_event(self, object event, Task task) except -1:
        """Run ``event._resume``; 1 if the wake-up turned out to be spurious."""
        cdef type kind = type(event)
        if kind is ReadEvent and (<ReadEvent>event).nbytes <= READ_BUFFER_SIZE and is_socket((<ReadEvent>event).sock):
            return self.recv_for(<ReadEvent>event, task)
        if kind is SendAll and is_socket((<SendAll>event).sock):
            return self.send_all(<SendAll>event, task)
        if kind is Sleep:
            return self._ready.push(task, None)
        if kind is AcceptEvent and is_inet_socket((<AcceptEvent>event).sock):
            return self.accept_for(<AcceptEvent>event, task)
        return self.resume_guarded(event, task)

    cdef int resume_guarded(self, object event, Task task) except -1:
        try:
            event._resume(self, task)
        except BlockingIOError:
            self.yield_event(event, task)  # readiness was only a hint
            return 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.schedule_throw(task, exc)
        return 0

    cdef int recv_for(self, ReadEvent event, Task task) except -1:
        """recv() for a ReadEvent: queue the bytes, wait again, or throw the error."""
        cdef int fd = aioc_socket_fd(event.sock)
        cdef ssize_t n
        if fd < 0:
            return self.schedule_throw(task, os_error(EBADF))
        while True:
            n = recv(fd, self.read_buffer, event.nbytes, MSG_DONTWAIT)
            if n >= 0:
                return self._ready.push(task, PyBytes_FromStringAndSize(self.read_buffer, n))
            if errno == EAGAIN:  # EWOULDBLOCK is the same code on every supported system
                self.yield_event(event, task)  # readiness was only a hint
                return 1
            if errno != EINTR:
                return self.schedule_throw(task, os_error(errno))
            PyErr_CheckSignals()

    cdef int accept_for(self, AcceptEvent event, Task task) except -1:
        """accept() for an AcceptEvent on an IPv4 or IPv6 listener, as
        AcceptEvent._resume does it, without the socket module's Python layer."""
        cdef object listener = event.sock
        cdef sockaddr_storage address
        cdef socklen_t length
        cdef int fd = aioc_socket_fd(listener)
        cdef int conn_fd, err
        if fd < 0:
            return self.schedule_throw(task, os_error(EBADF))
        while True:
            length = sizeof(address)
            conn_fd = accept4(fd, <sockaddr *>&address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if conn_fd >= 0:
                break
            err = errno
            if err == EAGAIN:
                self.yield_event(event, task)  # readiness was only a hint
                return 1
            if err == ECONNABORTED:  # the peer left first: not the server's problem
                return self.yield_event(event, task)
            if err in self.ACCEPT_BACKOFF_ERRNOS:
                self._accept_backoff(event, task, os_error(err))
                return 0
            if err != EINTR:
                return self.schedule_throw(task, os_error(err))
            PyErr_CheckSignals()
        try:
            conn = PySocketType.__new__(PySocketType)
            # SOCK_NONBLOCK in the type gives the object a timeout of 0 and
            # leaves its .type plain; accept4 made the fd itself non-blocking.
            SocketType.__init__(conn, aioc_socket_family(listener),
                                aioc_socket_type(listener) | SOCK_NONBLOCK,
                                aioc_socket_proto(listener), conn_fd)
        except BaseException:
            close_fd(conn_fd)
            raise
        conn._io_refs = 0  # what socket.socket.__init__ sets
        conn._closed = False
        return self._ready.push(task, (conn, aioc_inet_address(&address)))

    cdef int send_all(self, SendAll event, Task task) except -1:
        """Send until done (and queue the task) or until the buffer is full (and
        wait for writability), as SendAll._yield does; errors are thrown in."""
        cdef Py_buffer view
        cdef const char *data
        cdef Py_ssize_t size
        cdef ssize_t n
        cdef int fd = aioc_socket_fd(event.sock)
        cdef int err = 0
        cdef bint is_bytes = type(event.data) is bytes
        if fd < 0:
            return self.schedule_throw(task, os_error(EBADF))
        if is_bytes:  # the common case, without the buffer protocol's bookkeeping
            data, size = PyBytes_AS_STRING(event.data), PyBytes_GET_SIZE(event.data)
        else:
            PyObject_GetBuffer(event.data, &view, PyBUF_SIMPLE)
            data, size = <const char *>view.buf, view.len
        while event.sent < size:
            n = send(fd, data + event.sent, size - event.sent, MSG_DONTWAIT)
            if n >= 0:
                event.sent += n
            elif errno != EINTR:
                err = errno
                break
        if not is_bytes:
            PyBuffer_Release(&view)
        if err == 0:
            return self._ready.push(task, event.sent)
        if err != EAGAIN:
            return self.schedule_throw(task, os_error(err))
        try:
            self.wait_io(fd, True, event, task)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.schedule_throw(task, exc)
        return 0

    cdef int schedule_throw(self, Task task, object exc) except -1:
        task.throw_next = exc
        self._ready.push(task, None)
        return 0

    cdef int finish(self, Task task, object value, object error) except -1:
        task.finished = True
        task.value = value
        task.error = error
        task.log_exception = error is not None and not isinstance(error, Cancelled)
        # Unlink from the live list.
        if task.prev_live is None:
            self.live_head = task.next_live
        else:
            task.prev_live.next_live = task.next_live
        if task.next_live is None:
            self.live_tail = task.prev_live
        else:
            task.next_live.prev_live = task.prev_live
        task.prev_live = task.next_live = None
        self.live_count -= 1
        if task.joiners is not None:
            joiners = task.joiners
            task.joiners = None
            for event, joiner in joiners:
                (<Task>joiner).wait_kind = WAIT_NONE
                (<Task>joiner).join_target = None
                self.resume_event(event, joiner)
        return 0

    cdef int cancel_task(self, Task task) except -1:
        task.throw_next = Cancelled()
        if <PyObject *>task == self.current:
            return 0  # thrown in when it next yields
        if task.wait_kind != WAIT_NONE:
            self.unwait(task)
            self._ready.push(task, None)
        # Otherwise it already sits in the ready queue, where the pending
        # throw replaces the value it would have received.
        return 0

    def _close_task(self, Task task):
        self.unwait(task)
        try:
            task.coro.close()
        except BaseException as exc:  # e.g. a finally block that yields
            self.call_exception_handler(
                {"message": "Error while closing a task", "exception": exc, "task": task}
            )
        if not task.finished:
            self.finish(task, None, Cancelled())

    # -- waiting and waking -----------------------------------------------------------

    cdef int wait_io(self, int fd, bint writing, object event, Task task) except -1:
        cdef FdSlot *slot
        cdef PyObject *old_event
        cdef uint32_t mask
        if fd < 0:
            raise ValueError(f"cannot wait on file descriptor {fd}: the socket is closed")
        self.ensure_fd(fd)
        slot = &self.fds[fd]
        old_event = slot.writer_event if writing else slot.reader_event
        if old_event is not NULL:
            if not _stale(<object>old_event, fd):
                raise ResourceBusy(f"another task already waits on file descriptor {fd}")
            # The socket it waited on was closed and its number reused.
            old_task = <object>(slot.writer_task if writing else slot.reader_task)
            self.unwait(old_task)
            self.schedule_throw(old_task, ClosedResourceError())
            slot = &self.fds[fd]
        if self.use_epoll:
            if (slot.reader_task if writing else slot.writer_task) is not NULL:
                mask = EPOLLIN | EPOLLOUT
            else:
                mask = EPOLLOUT if writing else EPOLLIN
            self.watch(fd, mask, _owner_of(event))
            slot = &self.fds[fd]
        elif fd >= FD_LIMIT:
            raise ValueError(
                f"file descriptor {fd} is too large for the select backend "
                f"(limit {SELECT_FD_LIMIT}); use backend='epoll'"
            )
        Py_INCREF(event)
        Py_INCREF(task)
        if writing:
            slot.writer_event = <PyObject *>event
            slot.writer_task = <PyObject *>task
            task.wait_kind = WAIT_WRITE
        else:
            slot.reader_event = <PyObject *>event
            slot.reader_task = <PyObject *>task
            task.wait_kind = WAIT_READ
        task.wait_fd = fd
        self.io_waiters += 1
        return 0

    cdef int wait_timer(self, double deadline, object event, Task task) except -1:
        task.wait_timer = self.add_timer(deadline, task, event)
        task.wait_kind = WAIT_TIMER
        return 0

    cdef int wait_join(self, object target, object event, Task task) except -1:
        if type(target) is not Task or (<Task>target).loop is not self:
            raise TypeError(f"Join() needs a task of this loop, got {target!r}")
        cdef Task other = <Task>target
        if other is task:
            raise RuntimeError("a task cannot join itself")
        if other.finished:
            self.resume_event(event, task)
            return 0
        if other.joiners is None:
            other.joiners = []
        other.joiners.append((event, task))
        task.wait_kind = WAIT_JOIN
        task.join_target = other
        return 0

    cdef int arm_deadline(self, Task task, double deadline) except -1:
        if task.deadline is not NULL:
            if task.deadline.deadline <= deadline:
                return 0
            self.cancel_timer(task.deadline)
        task.deadline = self.add_timer(deadline, task, None)
        return 0

    cdef int unwait(self, Task task) except -1:
        """Remove ``task``'s registration, whatever it waits on."""
        cdef int kind = task.wait_kind
        cdef FdSlot *slot
        task.wait_kind = WAIT_NONE
        if kind == WAIT_READ or kind == WAIT_WRITE:
            slot = &self.fds[task.wait_fd]
            if kind == WAIT_READ:
                event, waiter = <object>slot.reader_event, <object>slot.reader_task
                slot.reader_event = slot.reader_task = NULL
            else:
                event, waiter = <object>slot.writer_event, <object>slot.writer_task
                slot.writer_event = slot.writer_task = NULL
            Py_DECREF(event)
            Py_DECREF(waiter)
            self.io_waiters -= 1
        elif kind == WAIT_TIMER:
            self.cancel_timer(task.wait_timer)
            task.wait_timer = NULL
        elif kind == WAIT_JOIN:
            target = task.join_target
            task.join_target = None
            target.joiners = [joiner for joiner in target.joiners if joiner[1] is not task]
        return 0

    cdef int dispatch_io(self, int fd, uint32_t mask, bint may_block) except -1:
        # Waiters are looked up here, not before the batch: an earlier
        # handler in the same batch may have removed them.  An unwaited fd
        # keeps its registration for one poll while tasks are ready, since
        # its task is likely about to wait on it again (see _loop_py).
        cdef uint32_t idle = 0
        if fd == self.wake_fd:
            self.drain_wake()
            return 0
        self.ensure_fd(fd)
        if mask & (EPOLLIN | FAULT):
            if self.fds[fd].reader_task is NULL:
                idle |= EPOLLIN
            else:
                self.wake_io(fd, False)
        if mask & (EPOLLOUT | FAULT):
            if self.fds[fd].writer_task is NULL:
                idle |= EPOLLOUT
            else:
                self.wake_io(fd, True)
        if mask & FAULT and self.fds[fd].reader_task is NULL and self.fds[fd].writer_task is NULL:
            idle = EPOLLIN | EPOLLOUT  # hang-ups are reported unasked: unregister entirely
        if idle:
            if may_block or self.fds[fd].kept_at == self.polls - 1:
                self.unwatch(fd, idle)
            else:
                self.fds[fd].kept_at = self.polls
        return 0

    cdef int wake_io(self, int fd, bint writer) except -1:
        cdef FdSlot *slot = &self.fds[fd]
        cdef PyObject *event_ptr
        cdef PyObject *task_ptr
        cdef Task task
        if writer:
            event_ptr, task_ptr = slot.writer_event, slot.writer_task
            slot.writer_event = slot.writer_task = NULL
        else:
            event_ptr, task_ptr = slot.reader_event, slot.reader_task
            slot.reader_event = slot.reader_task = NULL
        self.io_waiters -= 1
        event = <object>event_ptr
        task = <Task>task_ptr
        Py_DECREF(event)  # the locals now hold the slot's references
        Py_DECREF(task)
        task.wait_kind = WAIT_NONE
        if self.resume_event(event, task):
            slot = &self.fds[fd]
            slot.spurious += 1
            if slot.spurious >= ZOMBIE_LIMIT:
                # A closed fd's file, kept open by a dup, still reports under
                # this reused number: only a fresh epoll instance forgets it.
                self.rebuild()
                self.fds[fd].spurious = 0
        else:
            self.fds[fd].spurious = 0
        return 0

    cdef int drain_wake(self) except -1:
        while recv(self.wake_fd, self.read_buffer, READ_BUFFER_SIZE, MSG_DONTWAIT) > 0:
            pass
        # A signal caught in another thread wakes the poll through this fd;
        # its Python handler (KeyboardInterrupt, say) runs here.
        PyErr_CheckSignals()
        return 0

    # -- polling ---------------------------------------------------------------

    cdef int ensure_fd(self, int fd) except -1:
        cdef int size
        cdef FdSlot *fds
        if fd < self.nfds:
            return 0
        size = max(fd + 1, self.nfds * 2, 64)
        fds = <FdSlot *>PyMem_Realloc(self.fds, size * sizeof(FdSlot))
        if fds is NULL:
            raise MemoryError()
        memset(&fds[self.nfds], 0, (size - self.nfds) * sizeof(FdSlot))
        self.fds = fds
        self.nfds = size
        return 0

    cdef int watch(self, int fd, uint32_t mask, object owner) except -1:
        """Make sure ``fd`` reports ``mask`` for ``owner``'s open file (epoll only).

        An fd stays registered while the same socket object waits on it with
        the same interest, which saves an ``epoll_ctl`` per wait.
        """
        cdef epoll_event ev
        cdef FdSlot *slot
        cdef PyObject *old_owner = NULL
        cdef bint same_file
        self.ensure_fd(fd)
        slot = &self.fds[fd]
        if registration_fits(slot, mask, owner):
            return 0
        if slot.owner is not NULL:
            old_owner = PyWeakref_GetObject(<object>slot.owner)
        # A different owner: the old registration may have died with its file.
        same_file = (old_owner is not NULL and old_owner != <PyObject *>None
                     and _fileno(<object>old_owner) == fd)
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
        slot = &self.fds[fd]
        slot.registered = mask
        Py_XDECREF(slot.owner)
        slot.owner = NULL
        ref = _weak(owner)
        if ref is not None:
            Py_INCREF(ref)
            slot.owner = <PyObject *>ref
        return 0

    cdef int unwatch(self, int fd, uint32_t mask) except -1:
        """Stop reporting ``mask`` on ``fd``: no task waits for it."""
        cdef epoll_event ev
        cdef uint32_t remaining = 0
        cdef int rc
        if not self.use_epoll:
            return 0
        if fd < self.nfds:
            remaining = self.fds[fd].registered & ~mask
        ev.data.fd = fd
        ev.events = remaining
        if remaining:
            rc = epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
            if rc == 0:
                self.fds[fd].registered = remaining
        else:
            self.forget_slot(fd)
            rc = epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
        if rc < 0:
            # The fd was closed (or reused) while a dup keeps its old file
            # registered: epoll can no longer name that registration and
            # would report it forever.  Start from a fresh epoll instance.
            self.rebuild()
        return 0

    cdef void forget_slot(self, int fd) noexcept:
        if fd < self.nfds:
            self.fds[fd].registered = 0
            Py_XDECREF(self.fds[fd].owner)
            self.fds[fd].owner = NULL

    cdef void forget(self, int fd) noexcept:
        cdef epoll_event ev
        if self.use_epoll and fd < self.nfds and self.fds[fd].registered:
            self.forget_slot(fd)
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)  # fails only if already gone

    cdef int rebuild(self) except -1:
        """Re-register every live registration on a new epoll instance."""
        cdef epoll_event ev
        cdef int fd, epfd
        if not self.use_epoll:
            return 0
        epfd = epoll_create1(EPOLL_CLOEXEC)
        if epfd < 0:
            raise_errno(errno)
        close_fd(self.epfd)
        self.epfd = epfd
        for fd in range(self.nfds):
            if self.fds[fd].registered:
                ev.events = self.fds[fd].registered
                ev.data.fd = fd
                if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
                    self.forget_slot(fd)
        return 0

    cdef int poll_epoll(self, double timeout) except -1:
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
            PyErr_CheckSignals()  # runs Python signal handlers: Ctrl-C surfaces here
            return 0
        self.polls += 1
        for i in range(n):
            self.dispatch_io(self.events[i].data.fd, self.events[i].events, ms > 0)
        return 0

    cdef int poll_select(self, double timeout) except -1:
        cdef fd_set readable, writable
        cdef timeval tv
        cdef int fd, n, top = self.wake_fd
        cdef uint32_t mask
        FD_ZERO(&readable)
        FD_ZERO(&writable)
        FD_SET(self.wake_fd, &readable)
        for fd in range(min(self.nfds, FD_LIMIT)):
            if self.fds[fd].reader_task is not NULL:
                FD_SET(fd, &readable)
                top = max(top, fd)
            if self.fds[fd].writer_task is not NULL:
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
                    self.dispatch_io(fd, FAULT, timeout > 0.0)
            return 0
        # Ascending fd order, as the pure select backend reports.
        for fd in range(top + 1):
            mask = (EPOLLIN if FD_ISSET(fd, &readable) else 0) | (EPOLLOUT if FD_ISSET(fd, &writable) else 0)
            if mask:
                self.dispatch_io(fd, mask, timeout > 0.0)
        return 0

    # -- timers ------------------------------------------------------------------

    cdef TimerEntry *add_timer(self, double deadline, Task task, object event) except NULL:
        cdef TimerEntry *entry
        cdef TimerEntry **timers
        cdef Py_ssize_t i, parent
        if self.ntimers == self.timer_capacity:
            self.timer_capacity = max(64, self.timer_capacity * 2)
            timers = <TimerEntry **>PyMem_Realloc(self.timers, self.timer_capacity * sizeof(TimerEntry *))
            if timers is NULL:
                raise MemoryError()
            self.timers = timers
        entry = <TimerEntry *>PyMem_Malloc(sizeof(TimerEntry))
        if entry is NULL:
            raise MemoryError()
        self.timer_seq += 1
        entry.deadline = deadline
        entry.seq = self.timer_seq
        Py_INCREF(task)
        entry.task = <PyObject *>task
        entry.event = NULL
        if event is not None:
            Py_INCREF(event)
            entry.event = <PyObject *>event
        # Sift up.
        i = self.ntimers
        self.ntimers += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not timer_before(entry, self.timers[parent]):
                break
            self.timers[i] = self.timers[parent]
            i = parent
        self.timers[i] = entry
        return entry

    cdef void cancel_timer(self, TimerEntry *entry) noexcept:
        # Removed lazily: the node stays in the heap until it reaches the top.
        Py_XDECREF(entry.task)
        Py_XDECREF(entry.event)
        entry.task = entry.event = NULL
        self.cancelled_timers += 1
        if self.cancelled_timers > PRUNE_MIN and self.cancelled_timers * 2 > self.ntimers:
            self.prune_timers()

    cdef void prune_timers(self) noexcept:
        cdef Py_ssize_t i, kept = 0
        for i in range(self.ntimers):
            if self.timers[i].task is NULL:
                PyMem_Free(self.timers[i])
            else:
                self.timers[kept] = self.timers[i]
                kept += 1
        self.ntimers = kept
        self.cancelled_timers = 0
        for i in range(kept // 2 - 1, -1, -1):
            sift_down(self.timers, kept, i)

    cdef void clear_timers(self) noexcept:
        cdef Py_ssize_t i
        cdef TimerEntry *entry
        for i in range(self.ntimers):
            entry = self.timers[i]
            if entry.task is not NULL:
                (<Task>entry.task).wait_timer = NULL
                (<Task>entry.task).deadline = NULL
            Py_XDECREF(entry.task)
            Py_XDECREF(entry.event)
            PyMem_Free(entry)
        self.ntimers = 0
        self.cancelled_timers = 0

    cdef int fire_timers(self) except -1:
        cdef double now = monotonic()
        cdef TimerEntry *entry
        cdef Task task
        while self.ntimers and self.timers[0].deadline <= now:
            entry = self.timers[0]
            self.ntimers -= 1
            if self.ntimers:
                self.timers[0] = self.timers[self.ntimers]
                sift_down(self.timers, self.ntimers, 0)
            if entry.task is NULL:
                self.cancelled_timers -= 1
                PyMem_Free(entry)
                continue
            task = <Task>entry.task
            Py_DECREF(task)  # `task` holds its own reference now
            if entry.event is NULL:
                PyMem_Free(entry)
                task.deadline = NULL
                if task.wait_kind != WAIT_NONE:  # still blocked; else it got its value
                    self.unwait(task)
                    self.schedule_throw(task, TimeoutError())
            else:
                event = <object>entry.event
                Py_DECREF(event)
                PyMem_Free(entry)
                task.wait_timer = NULL
                task.wait_kind = WAIT_NONE
                self.resume_event(event, task)
        return 0


cdef inline bint registration_fits(FdSlot *slot, uint32_t mask, object owner) except -1:
    """Whether epoll already reports ``mask`` on this fd for ``owner``'s open file.

    The registration was made for a socket object, held weakly: the same
    live object still owns the same open file, while another object on the
    same fd number may be a new file that epoll has never seen.
    """
    return (slot.registered & mask == mask and slot.owner is not NULL and owner is not None
            and aioc_weakref_target(slot.owner) == <PyObject *>owner)


cdef inline bint timer_before(TimerEntry *a, TimerEntry *b) noexcept nogil:
    return a.deadline < b.deadline or (a.deadline == b.deadline and a.seq < b.seq)


cdef void sift_down(TimerEntry **heap, Py_ssize_t size, Py_ssize_t i) noexcept nogil:
    cdef TimerEntry *entry = heap[i]
    cdef Py_ssize_t child
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and timer_before(heap[child + 1], heap[child]):
            child += 1
        if not timer_before(heap[child], entry):
            break
        heap[i] = heap[child]
        i = child
    heap[i] = entry


cdef object _weak(object owner):
    if owner is None:
        return None
    try:
        return PyWeakref_NewRef(owner, None)
    except TypeError:
        return None


cdef inline object _owner_of(object event):
    cdef type kind = type(event)
    if kind is ReadEvent:
        return (<ReadEvent>event).sock
    if kind is SendAll:
        return (<SendAll>event).sock
    return getattr(event, "sock", None)


cdef int _check_fd(object fd) except? -1:
    if not isinstance(fd, int):
        raise TypeError(f"file descriptor must be an int, got {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"cannot wait on file descriptor {fd}: the socket is closed")
    return fd


def run(coro, *, backend=None):
    """Run ``coro`` on a new loop, close the loop, and return the result."""
    with EventLoop(backend) as loop:
        return loop.run_until_complete(coro)


# -- the built-in events, compiled -------------------------------------------------
# Same constructors, fields and behaviour as in events.py.  The loop above
# handles their exact types in C; their Python methods, used by other loops and
# by subclasses, are the pure-Python ones.

_ReadEvent_yield = _events.ReadEvent._yield
_ReadEvent_resume = _events.ReadEvent._resume
_WriteEvent_yield = _events.WriteEvent._yield
_WriteEvent_resume = _events.WriteEvent._resume
_SendAll_yield = _events.SendAll._yield
_AcceptEvent_yield = _events.AcceptEvent._yield
_AcceptEvent_resume = _events.AcceptEvent._resume
_ConnectEvent_yield = _events.ConnectEvent._yield
_ConnectEvent_resume = _events.ConnectEvent._resume
_Sleep_yield = _events.Sleep._yield
_Sleep_resume = _events.Sleep._resume
_Spawn_yield = _events.Spawn._yield
_Join_yield = _events.Join._yield
_Join_resume = _events.Join._resume
_check_nbytes = _events._check_nbytes
_check_seconds = _events._check_seconds


def _raise_thrown(typ, val=None, tb=None):
    # What gen.throw() passes on: an exception, or its class (and a value).
    exc = val if val is not None else typ
    if isinstance(exc, type):
        exc = exc()
    raise exc.with_traceback(tb) if tb is not None else exc


cdef class BuiltinEvent:
    """Base of the compiled built-in events; registered as an ``aioc.Event``.

    ReadEvent, SendAll and Sleep, made once per request or switch, are base
    types of their own instead: only a base type can keep a freelist.
    """

    def _yield(self, loop, task):
        raise NotImplementedError

    def _resume(self, loop, task):
        raise NotImplementedError


Event.register(BuiltinEvent)


# Not tracked by the GC: a built-in event refers to a socket and data, never
# back to itself; a Python subclass gets its own GC support.
@cython.no_gc
@cython.freelist(64)
cdef class ReadEvent:
    """Wait until ``sock`` is readable, then receive up to ``nbytes``."""

    def __init__(self, sock, nbytes=DEFAULT_READ_SIZE):
        self.sock = sock
        if type(nbytes) is int:
            self.nbytes = nbytes
            if self.nbytes > 0:
                return
        self.nbytes = _check_nbytes(nbytes)  # raises the pure loop's error

    def _yield(self, loop, task):
        _ReadEvent_yield(self, loop, task)

    def _resume(self, loop, task):
        _ReadEvent_resume(self, loop, task)


cdef class WriteEvent(BuiltinEvent):
    """Send what ``sock`` accepts of ``data`` in one call; resumes with the count."""

    def __init__(self, sock, data):
        self.sock = sock
        self.data = data

    def _yield(self, loop, task):
        _WriteEvent_yield(self, loop, task)

    def _resume(self, loop, task):
        _WriteEvent_resume(self, loop, task)


@cython.no_gc
@cython.freelist(64)
cdef class SendAll:
    """Send every byte of ``data``; resumes with its length in bytes."""

    def __init__(self, sock, data):
        self.sock = sock
        self.data = data if type(data) is bytes else memoryview(data).cast("B")

    def _yield(self, loop, task):
        _SendAll_yield(self, loop, task)

    def _resume(self, loop, task):
        _SendAll_yield(self, loop, task)


Event.register(ReadEvent)
Event.register(SendAll)


def sendall(sock, data):
    """``yield from sendall(sock, data)``: send all of ``data``, return its length."""
    cdef SendAll event = SendAll.__new__(SendAll)  # skips argument parsing
    event.sock = sock
    event.data = data if type(data) is bytes else memoryview(data).cast("B")
    return event


cdef class AcceptEvent(BuiltinEvent):
    """Accept a connection; resumes with ``(conn, address)``, ``conn`` non-blocking."""

    def __init__(self, sock):
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock

    def _yield(self, loop, task):
        _AcceptEvent_yield(self, loop, task)

    def _resume(self, loop, task):
        _AcceptEvent_resume(self, loop, task)


cdef class ConnectEvent(BuiltinEvent):
    """Connect ``sock`` to ``address`` without blocking; resumes with ``None``."""

    def __init__(self, sock, address):
        if sock.getblocking():
            sock.setblocking(False)
        self.sock = sock
        self.address = address

    def _yield(self, loop, task):
        _ConnectEvent_yield(self, loop, task)

    def _resume(self, loop, task):
        _ConnectEvent_resume(self, loop, task)


@cython.freelist(64)
cdef class Sleep:
    """Resume after ``seconds``; ``Sleep(0)`` moves the task to the back of the queue."""

    def __init__(self, seconds):
        if type(seconds) is float:
            self.seconds = PyFloat_AS_DOUBLE(seconds)
            if self.seconds != self.seconds:
                raise ValueError("seconds must not be NaN")
        elif type(seconds) is int:
            self.seconds = PyLong_AsDouble(seconds)
        else:
            self.seconds = _check_seconds(seconds)

    def _yield(self, loop, task):
        _Sleep_yield(self, loop, task)

    def _resume(self, loop, task):
        _Sleep_resume(self, loop, task)


Event.register(Sleep)

# Every compiled event is its own awaitable iterator (__await__, __iter__,
# __next__, send, throw, close): set on each type, since subtypes readied before
# this point do not inherit slots set later.
for _event_type in (BuiltinEvent, ReadEvent, WriteEvent, SendAll, AcceptEvent, ConnectEvent, Sleep, Spawn, Join):
    aioc_make_awaitable(_event_type, _raise_thrown)


cdef _check_event_layout():
    # The C slots find `suspended` right after the object header.
    cdef Sleep sleep = Sleep(0)
    cdef ReadEvent read = ReadEvent(None)
    cdef SendAll send = SendAll(None, b"")
    cdef BuiltinEvent spawn = Spawn(None)
    sleep.suspended = read.suspended = send.suspended = spawn.suspended = True
    for event in (sleep, read, send, spawn):
        if not aioc_event_suspended(event):
            raise ImportError(f"unexpected layout of {type(event).__name__}")


_check_event_layout()


cdef class Spawn(BuiltinEvent):
    """Start ``coro`` as a new task; resumes with its Task."""

    def __init__(self, coro):
        self.coro = coro

    def _yield(self, loop, task):
        _Spawn_yield(self, loop, task)


cdef class Join(BuiltinEvent):
    """Wait for ``task``; resumes with its result or raises its exception."""

    def __init__(self, task):
        self.task = task

    def _yield(self, loop, task):
        _Join_yield(self, loop, task)

    def _resume(self, loop, task):
        _Join_resume(self, loop, task)
