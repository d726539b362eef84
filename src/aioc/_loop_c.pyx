# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled event loop.

Every rule comes from the pure-Python loop in ``_loop_py.py``, which remains
the readable specification; this module runs the same rules with the ready
queue, the waiting tables, the timer heap and the polling loop in C, calling
epoll (or select, or io_uring, which only this loop has) directly.  Built-in events of this module get C fast paths
selected by exact type; any other object with ``_yield``/``_resume`` goes
through those Python methods, exactly as on the pure loop.

This file holds the scheduler; ``_loop_c.pxd`` maps the files it includes.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.list cimport PyList_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, Py_TYPE
from cpython.ref cimport Py_CLEAR, Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.weakref cimport PyWeakref_NewRef
from libc.errno cimport EAGAIN, EBADF, ECONNABORTED, EEXIST, EINTR, ENOENT, errno
from libc.math cimport ceil
from libc.stdint cimport uint32_t
from libc.string cimport memcpy, memmove, memset
from cpython.pyport cimport PY_SSIZE_T_MAX
from posix.fcntl cimport F_GETFD, fcntl
from posix.time cimport timeval
from posix.unistd cimport close as close_fd

import _socket
import os
import socket
import types
from collections import deque

from aioc import _constants as C
from aioc import _loop_py
from aioc import events as _events
from aioc import queues as _queues
from aioc import sync as _sync
from aioc import streams as _streams
from aioc._interrupts import InterruptGuard
from aioc._introspect import TaskStack, check_name, coroutine_frames, default_name, where
from aioc._io_epoll import fileno_of
from aioc._loop_py import check_deadline, check_fd, default_exception_handler, is_stale, not_an_event, logger
from aioc.events import (
    Cancelled,
    ClosedResourceError,
    Event,
    InvalidStateError,
    ResourceBusy,
    Timeout,
    accept_backoff,
    as_send_buffer,
    check_address,
    check_nbytes,
    check_seconds,
    check_sent,
    timeout_after,
)
from aioc._constants import (
    ACCEPT_BACKOFF_ERRNOS,
    CLOSE_CALLBACK_ERROR,
    CLOSE_ERROR,
    CLOSE_RUNNING,
    DEFAULT_READ_SIZE,
    HANDLER_ERROR,
    JOIN_SELF,
    LOOP_CLOSED,
    LOOP_RUNNING,
    NEVER_RETRIEVED,
    NO_TASK_CREATION,
    NOT_SHIELDED,
    SLOW_STEP,
    SLOW_STEP_REPORT,
    STOPPED_EARLY,
    TASK_NOT_DONE,
    busy_fd,
    fd_too_large,
    io_uring_unavailable,
    not_a_coroutine,
    not_a_task_of,
    reschedule_waiting,
    unknown_backend,
)

# The same public namespace as the pure loop's.
__all__ = _loop_py.__all__


cdef extern from "_compiled/aioc_epoll.h" nogil:
    const int AIOC_HAVE_EPOLL
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
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
    ssize_t recvfrom(int fd, void *buf, size_t n, int flags, sockaddr *address, socklen_t *length)
    ssize_t sendto(int fd, const void *buf, size_t n, int flags, const sockaddr *address, socklen_t length)
    int accept4(int fd, sockaddr *address, socklen_t *length, int flags)
    enum:
        MSG_DONTWAIT
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        AF_INET
        AF_INET6

cdef extern from "time.h" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clock, timespec *ts)
    enum:
        CLOCK_MONOTONIC

cdef extern from "_compiled/aioc.h":
    ctypedef int (*visitproc)(PyObject *, void *) noexcept
    ctypedef int (*aioc_visit_held_fn)(PyObject *, visitproc, void *) noexcept
    ctypedef void (*aioc_clear_held_fn)(PyObject *) noexcept
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *) noexcept
    int aioc_send(object coro, object arg, PyObject **result)
    int aioc_throw(object coro, object exc, PyObject **result)
    int aioc_reraise() except -1
    int aioc_socket_fd(object sock)
    int aioc_socket_family(object sock)
    int aioc_socket_type(object sock)
    int aioc_socket_proto(object sock)
    PyObject *aioc_weakref_target(PyObject *ref)
    object aioc_inet_address(const sockaddr_storage *address)
    int aioc_inet_sockaddr(object address, int family, sockaddr_storage *out, socklen_t *length)
    Py_ssize_t aioc_positive_size(object o)
    int aioc_make_awaitable(object type, object raise_thrown, object await_shared) except -1
    int aioc_make_completed(object type) except -1
    void aioc_set_type(object o, object type)
    ctypedef PyObject *(*aioc_stream_step_fn)(PyObject *read)
    int aioc_make_stream_awaitable(object type, aioc_stream_step_fn step) except -1
    int aioc_event_suspended(object event)
    int aioc_install_gc(object type, aioc_visit_held_fn visit, aioc_clear_held_fn clear) except -1
    void aioc_set_traverse(object type, traverseproc traverse)
    void aioc_install_task_free_list(object type)


# What a blocked task waits on (Task.wait_kind), as WAIT_* in _loop_py.
cdef enum:
    WAIT_NONE = 0
    WAIT_READ = 1
    WAIT_WRITE = 2
    WAIT_TIMER = 3
    WAIT_JOIN = 4
    WAIT_PARKED = 5
    WAIT_QUEUED = -1               # in the ready queue: woken already

# Readiness masks: the values of _constants (epoll's own), checked below.
cdef enum:
    READABLE = 0x001
    WRITABLE = 0x004
    FAULT = 0x008 | 0x010

if (READABLE, WRITABLE, FAULT) != (C.READABLE, C.WRITABLE, C.FAULT):
    raise ImportError("the compiled loop's readiness masks differ from aioc._constants")

cdef double MAX_POLL_TIMEOUT = C.MAX_POLL_TIMEOUT
cdef int SELECT_FD_LIMIT = C.SELECT_FD_LIMIT
cdef int ZOMBIE_WAKEUPS = C.ZOMBIE_WAKEUPS
cdef int IMMEDIATE_RESUMPTIONS = C.IMMEDIATE_RESUMPTIONS
cdef Py_ssize_t TIMER_PRUNE_MIN = C.TIMER_PRUNE_MIN
cdef type SocketType = _socket.socket
cdef type PySocketType = socket.socket
cdef type GeneratorType = types.GeneratorType
cdef type CoroutineType = types.CoroutineType


cdef inline double as_deadline(object deadline) except? -1.0:
    # A float as it is (timers_push refuses NaN); anything else as the pure
    # loop takes it, so that a bool or a string is refused alike.
    if type(deadline) is float:
        return PyFloat_AS_DOUBLE(deadline)
    return check_deadline(deadline)


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


cdef bint socket_layout_known = False


cdef check_socket_layout():
    global socket_layout_known
    a, b = socket.socketpair()
    udp = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        socket_layout_known = all(
            aioc_socket_fd(s) == s.fileno() and aioc_socket_family(s) == s.family
            and aioc_socket_type(s) == s.type and aioc_socket_proto(s) == s.proto
            for s in (a, b, udp)
        )
    finally:
        a.close()
        b.close()
        udp.close()
    socket_layout_known = socket_layout_known and aioc_socket_fd(a) == -1


check_socket_layout()


def _socket_layout_ok():
    """Whether sockets' fds are read from the objects directly (else via fileno())."""
    return socket_layout_known


include "_compiled/ready.pxi"
include "_compiled/tasks.pxi"
include "_compiled/timers.pxi"
include "_compiled/fdtable.pxi"
include "_compiled/io_backend.pxi"
include "_compiled/io_epoll.pxi"
include "_compiled/io_select.pxi"
include "_compiled/io_uring.pxi"
include "_compiled/fastpaths.pxi"


@cython.final
cdef class EventLoop:
    """Runs generator coroutines (and ``async def`` coroutines) that yield events.

    ``backend`` is ``"epoll"`` (the default where available), ``"select"``,
    or ``"io_uring"`` where the kernel allows it (compiled loop only).
    """

    def __cinit__(self):
        self.wake_fd = -1
        self.polls = 1  # so that a slot's kept_at of 0 means "never kept"

    def __init__(self, backend=None, *, debug=False):
        self.debug = bool(debug)
        self.slow_step = SLOW_STEP
        self.io = make_backend(backend)
        self.backend = self.io.name
        if type(self.io) is IoUringBackend:
            self.uring = <IoUringBackend>self.io
        ring_init(&self.ready)
        self.threadsafe = deque()
        self.close_callbacks = []
        self.read_buffer = <char *>PyMem_Malloc(READ_BUFFER_SIZE)
        if self.read_buffer is NULL:
            raise MemoryError()
        # Another thread (or a signal) wakes a blocked poll through this pair.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.wake_fd = self.wake_r.fileno()
        try:
            self.io.watch(self, self.wake_fd, READABLE, self.wake_r)
        except BaseException:
            self.io.close()
            self.wake_r.close()
            self.wake_w.close()
            raise

    def __dealloc__(self):
        live_clear(self)
        fds_clear(&self.fds)
        PyMem_Free(self.fds.slots)
        timers_clear(&self.timers)
        PyMem_Free(self.timers.entries)
        ring_free(&self.ready)
        PyMem_Free(self.read_buffer)

    # -- public API ---------------------------------------------------------

    def get_debug(self):
        return self.debug

    def tasks(self):
        """The unfinished tasks, in creation order."""
        tasks = []
        cdef PyObject *task = self.live_head
        while task is not NULL:
            tasks.append(<Task>task)
            task = (<Task>task).next_live
        return tasks

    cpdef double time(self) noexcept:
        """The loop's clock: ``time.monotonic()``."""
        return monotonic()

    cpdef Task call_soon(self, coro):
        """Schedule ``coro`` (a generator or coroutine) as a new task."""
        self.check_open()
        cdef Task task = self.new_task(coro)
        self.schedule_new(task)
        return task

    def call_soon_threadsafe(self, coro):
        """Like :meth:`call_soon`, from any thread; wakes a blocked poll."""
        self.check_open()
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
        self.check_open()
        if self.running:
            raise RuntimeError(LOOP_RUNNING)
        if isinstance(coro, Task) and (<Task>coro).loop is self:
            task = coro
        else:
            task = self.call_soon(coro)
        self._run(task)
        if not task.finished:
            raise RuntimeError(STOPPED_EARLY)
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
        """Close every unfinished coroutine (its ``finally`` blocks run), then the backend."""
        if self.closed:
            return
        if self.running:
            raise RuntimeError(CLOSE_RUNNING)
        self.closed = True
        self.adopt_threadsafe()
        cdef Task task
        while self.live_head is not NULL:
            task = <Task>self.live_head  # held here: finishing drops the list's reference
            self._close_task(task)
        self._run_close_callbacks()
        ring_clear(&self.ready)
        self.clear_timers()
        self.io.close()
        self.wake_r.close()
        self.wake_w.close()

    def close_socket(self, sock):
        """Close ``sock`` and throw :class:`ClosedResourceError` into its waiters.

        Closing a socket directly while a task waits on it would leave that
        task waiting forever: epoll silently forgets a closed file.
        """
        cdef int fd = sock.fileno()
        cdef PyObject *waiter
        if fd >= 0:
            for writing in (False, True):
                if fd < self.fds.size:
                    waiter = self.fds.slots[fd].writer_task if writing else self.fds.slots[fd].reader_task
                    if waiter is not NULL:
                        task = <Task>waiter
                        self.unwait(task)
                        self.schedule_throw(task, ClosedResourceError())
            self.io.forget(self, fd)
        sock.close()

    def add_close_callback(self, callback):
        """Call ``callback()`` when the loop closes, after its tasks have been closed."""
        self.check_open()
        self.close_callbacks.append(callback)

    def _run_close_callbacks(self):
        callbacks, self.close_callbacks = self.close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                self.call_exception_handler({"message": CLOSE_CALLBACK_ERROR, "exception": exc})

    def set_exception_handler(self, handler):
        """``handler(loop, context)`` receives errors nobody else will see."""
        self.exception_handler = handler

    def call_exception_handler(self, context):
        handler = self.exception_handler or default_exception_handler
        try:
            handler(self, context)
        except Exception:
            logger.exception(HANDLER_ERROR)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the contract with events (aioc.lowlevel) -----------------------------

    cpdef wait_readable(self, fd, event, Task task, owner=None):
        if self.uring is not None:  # the built-in events under a Timeout, say
            if type(event) is ReadEvent and uring_can_read(<ReadEvent>event):
                uring_read(self, <ReadEvent>event, task)
                return
            if type(event) is AcceptEvent and is_inet_socket((<AcceptEvent>event).sock):
                uring_accept(self, <AcceptEvent>event, task)
                return
        self.wait_io(check_fd(fd), False, event, task, owner)

    cpdef wait_writable(self, fd, event, Task task, owner=None):
        self.wait_io(check_fd(fd), True, event, task, owner)

    cpdef wait_until(self, deadline, event, Task task):
        self.wait_at(as_deadline(deadline), event, task)

    cpdef wait_task(self, target, event, Task task):
        if not isinstance(target, Task) or (<Task>target).loop is not self:
            raise TypeError(not_a_task_of(target))
        cdef Task other = <Task>target
        if other is task:
            raise RuntimeError(JOIN_SELF)
        if other.finished:
            self.resume_event(event, task)
            return
        if other.joiners is None:
            other.joiners = []
        other.joiners.append((event, task))
        task.wait_kind = WAIT_JOIN
        task.join_target = other

    cpdef set_deadline(self, Task task, deadline):
        cdef double when = as_deadline(deadline)
        if task.deadline is not NULL:
            if task.deadline.deadline <= when:
                return
            self.cancel_timer(task.deadline)
        task.deadline = self.add_timer(when, task, None)

    cpdef shield(self, Task task):
        task.shield_depth += 1

    cpdef bint unshield(self, Task task) except -1:
        if task.shield_depth <= 0:
            raise RuntimeError(NOT_SHIELDED)
        task.shield_depth -= 1
        if task.shield_depth == 0 and task.cancel_pending:
            task.cancel_pending = False
            return True
        return False

    cpdef park(self, Task task):
        if task.loop is not self:
            raise ValueError(f"{task!r} belongs to another loop")
        task.wait_kind = WAIT_PARKED

    cpdef bint reschedule(self, Task task, value=None) except -1:
        if task.loop is not self:
            raise ValueError(f"{task!r} belongs to another loop")
        if task.wait_kind == WAIT_QUEUED:
            return False  # a cancel or a deadline woke it first
        if task.wait_kind > WAIT_NONE and task.wait_kind != WAIT_PARKED:
            raise RuntimeError(reschedule_waiting(task))
        self.push(task, value)
        return True

    cpdef complete(self, Task task, value=None):
        self.finish_at_once(task, value)

    cdef inline int finish_at_once(self, Task task, object value) except -1:
        # loop.complete: resumed when its _yield returns (see step), or queued.
        if <PyObject *>task is self.yielding and self.immediate_left > 0 and task.wait_kind == WAIT_NONE:
            self.immediate_left -= 1
            # Marked queued, so that a cancel or a deadline treats it as woken.
            task.wait_kind = WAIT_QUEUED
            self.yielding = NULL
            self.completed_value = value
            return 0
        self.reschedule(task, value)
        return 0

    # -- the tutorial's names, kept for programs written against them -------

    @property
    def _num_tasks(self):
        return self.live_count

    @property
    def _ready(self):
        return ReadyQueue(self)

    def _read_wait(self, fd, event, task):
        self.wait_readable(fd, event, task, getattr(event, "sock", None))

    def _write_wait(self, fd, event, task):
        self.wait_writable(fd, event, task, getattr(event, "sock", None))

    def _timer_wait(self, deadline, event, task):
        self.wait_until(deadline, event, task)

    # -- the kernel ----------------------------------------------------------

    cdef inline int check_open(self) except -1:
        if self.closed:
            raise RuntimeError(LOOP_CLOSED)
        return 0

    def _wake(self):
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self, Task until):
        self.check_open()
        if self.running:
            raise RuntimeError(LOOP_RUNNING)
        self.running = True
        self.stopping = False
        guard = InterruptGuard(self.stop, self.wake_w.fileno())
        try:
            guard.install()
            while not self.stopping:
                if until is not None:
                    if until.finished:
                        break
                elif self.live_count == 0 and not self.threadsafe:
                    break
                self.run_once()
        finally:
            guard.uninstall()
            self.running = False
            self.stopping = False
        if guard.pending:
            raise KeyboardInterrupt

    cdef int run_once(self) except -1:
        cdef double timeout
        cdef Py_ssize_t n
        cdef PyObject *task_ptr
        cdef PyObject *value_ptr
        cdef Task task
        self.yielding = NULL  # never left set by a step that raised
        if self.ready.count:
            timeout = 0.0
        elif self.timers.size:
            timeout = min(max(self.timers.entries[0].deadline - monotonic(), 0.0), MAX_POLL_TIMEOUT)
        else:
            timeout = MAX_POLL_TIMEOUT
        # A zero-timeout poll is pointless when no task waits on I/O.
        if timeout > 0.0 or self.io_waiters:
            self.polls += 1
            self.io.poll(self, timeout)
        if self.threadsafe:
            self.adopt_threadsafe()
        if self.timers.size:
            self.fire_timers()
        # A snapshot: what the steps schedule runs next pass, after a poll.
        n = self.ready.count
        while n:
            n -= 1
            ring_pop(&self.ready, &task_ptr, &value_ptr)
            task = <Task>task_ptr
            value = <object>value_ptr
            Py_DECREF(task)  # the locals now hold the ring's references
            Py_DECREF(value)
            if self.debug:
                self.step_timed(task, value)
            else:
                self.step(task, value)
        return 0

    cdef int step_timed(self, Task task, object value) except -1:
        """A debug loop's step: reports holding the loop longer than ``slow_step``."""
        resumed_at = where(task.coro)
        cdef double start = monotonic()
        try:
            self.step(task, value)
        finally:
            held = monotonic() - start
            if held > self.slow_step:
                logger.warning(SLOW_STEP_REPORT, task.name, held, resumed_at)
        return 0

    cdef inline Task new_task(self, object coro):
        cdef type kind = type(coro)
        if kind is not GeneratorType and kind is not CoroutineType:
            if not (hasattr(coro, "send") and hasattr(coro, "throw")):
                raise TypeError(not_a_coroutine(coro))
        global creating_task
        creating_task = True
        cdef Task task = Task.__new__(Task)  # no arguments to parse: the fields are set here
        task.loop = self
        task.coro = coro
        return task

    cdef inline int schedule_new(self, Task task) except -1:
        # Linked in creation order, so close() can reach every live task;
        # the list owns a reference, dropped by finish.
        Py_INCREF(task)
        task.prev_live = self.live_tail
        if self.live_tail is NULL:
            self.live_head = <PyObject *>task
        else:
            (<Task>self.live_tail).next_live = <PyObject *>task
        self.live_tail = <PyObject *>task
        self.live_count += 1
        return self.push(task, None)

    cdef inline int push(self, Task task, object value) except -1:
        task.wait_kind = WAIT_QUEUED
        return ring_push(&self.ready, task, value)

    cdef int adopt_threadsafe(self) except -1:
        while self.threadsafe:
            self.schedule_new(self.threadsafe.popleft())
        return 0

    cdef int step(self, Task task, object value) except -1:
        # One step may resume the task several times: each time its event
        # completes at once (loop.complete), up to IMMEDIATE_RESUMPTIONS.
        self.immediate_left = IMMEDIATE_RESUMPTIONS
        while self.resume_task(task, value):
            value = self.completed_value
            self.completed_value = None
        return 0

    cdef int resume_task(self, Task task, object value) except -1:
        # Sends value (or the pending throw) into task; 1 if it completed at once.
        cdef PyObject *result = NULL
        cdef int status
        task.wait_kind = WAIT_NONE
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
            return 0
        if task.throw_next is not None:
            self.push(task, None)  # cancelled while it ran
            return 0
        self.yielding = <PyObject *>task
        self.yield_event(event, task)
        if self.yielding == NULL:
            return 1
        self.yielding = NULL
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
        cdef PyObject *kind = <PyObject *>Py_TYPE(event)  # borrowed: no reference counting
        if kind == <PyObject *>Sleep and (<Sleep>event)._seconds <= 0.0:
            return self.push(task, None)
        if kind == <PyObject *>ReadEvent:
            if self.uring is not None and uring_can_read(<ReadEvent>event):
                return uring_read(self, <ReadEvent>event, task)
            if rewait_read(self, (<ReadEvent>event).sock, event, task):
                return 0
        if kind == <PyObject *>SendAll and is_socket((<SendAll>event).sock):
            return send_all(self, <SendAll>event, task)
        if kind == <PyObject *>StreamRead and (<StreamRead>event).suspended and rewait_read(self, (<StreamRead>event).stream._sock, event, task):
            return 0
        if kind == <PyObject *>RecvFrom and rewait_read(self, (<RecvFrom>event).sock, event, task):
            return 0
        if kind == <PyObject *>SendTo:
            return send_to(self, <SendTo>event, task, False)
        return self.yield_guarded(event, task)

    cdef int yield_guarded(self, object event, Task task) except -1:
        cdef type kind = type(event)
        cdef double seconds
        try:
            if kind is ReadEvent:
                sock = (<ReadEvent>event).sock
                self.wait_io(socket_fd(sock), False, event, task, sock)
            elif kind is Sleep:
                seconds = (<Sleep>event)._seconds
                if seconds <= 0.0:
                    self.push(task, None)
                else:
                    self.wait_at(monotonic() + seconds, event, task)
            elif kind is Spawn:
                self.finish_at_once(task, self.call_soon((<Spawn>event).coro))
            elif kind is Join:
                self.wait_task((<Join>event).task, event, task)
            elif kind is AcceptEvent:
                sock = (<AcceptEvent>event).sock
                if self.uring is not None and is_inet_socket(sock) and socket_fd(sock) >= 0:
                    uring_accept(self, <AcceptEvent>event, task)
                else:
                    self.wait_io(socket_fd(sock), False, event, task, sock)
            elif kind is StreamRead:
                check_driven(<StreamRead>event)
                sock = (<StreamRead>event).stream._sock
                self.wait_io(socket_fd(sock), False, event, task, sock)
            elif kind is RecvFrom:
                sock = (<RecvFrom>event).sock
                self.wait_io(socket_fd(sock), False, event, task, sock)
            else:
                method = getattr(event, "_yield", None)
                if method is None:
                    self.schedule_throw(task, not_an_event(task, event))
                else:
                    method(self, task)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.unwait(task)
            self.schedule_throw(task, exc)
        return 0

    cdef int resume_event(self, object event, Task task) except -1:
        """Run ``event._resume``; 1 if the wake-up turned out to be spurious."""
        cdef PyObject *kind = <PyObject *>Py_TYPE(event)  # borrowed: no reference counting
        if kind == <PyObject *>ReadEvent and (<ReadEvent>event)._nbytes <= READ_BUFFER_SIZE and is_socket((<ReadEvent>event).sock):
            return recv_for(self, <ReadEvent>event, task)
        if kind == <PyObject *>SendAll and is_socket((<SendAll>event).sock):
            return send_all(self, <SendAll>event, task)
        if kind == <PyObject *>Sleep:
            return self.push(task, None)
        if kind == <PyObject *>AcceptEvent and is_inet_socket((<AcceptEvent>event).sock):
            return accept_for(self, <AcceptEvent>event, task)
        if kind == <PyObject *>StreamRead and is_socket((<StreamRead>event).stream._sock):
            return stream_receive_for(self, <StreamRead>event, task)
        if kind == <PyObject *>RecvFrom and (<RecvFrom>event)._max_bytes <= READ_BUFFER_SIZE and is_inet_socket((<RecvFrom>event).sock):
            return recvfrom_for(self, <RecvFrom>event, task)
        if kind == <PyObject *>SendTo:
            return send_to(self, <SendTo>event, task, True)
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

    cdef int schedule_throw(self, Task task, object exc) except -1:
        task.throw_next = exc
        if task.wait_kind != WAIT_QUEUED:  # queued already: the throw replaces its value
            self.push(task, None)
        return 0

    cdef int finish(self, Task task, object value, object error) except -1:
        task.finished = True
        task.value = value
        task.error = error
        task.log_exception = error is not None and not isinstance(error, Cancelled)
        if task.log_exception:
            aioc_set_type(task, FailedTask)
        live_unlink(self, task)
        if task.joiners is not None:
            joiners = task.joiners
            task.joiners = None
            for event, joiner in joiners:
                (<Task>joiner).wait_kind = WAIT_NONE
                (<Task>joiner).join_target = None
                self.resume_event(event, joiner)
        # The list's reference: every caller holds its own while it finishes.
        Py_DECREF(task)
        return 0

    cdef int cancel_task(self, Task task) except -1:
        if task.shield_depth:
            task.cancel_pending = True  # thrown in when the last shield is left
            return 0
        task.throw_next = Cancelled()
        if <PyObject *>task == self.current:
            return 0  # thrown in when it next yields
        if task.wait_kind > WAIT_NONE:
            self.unwait(task)
            self.push(task, None)
        # Otherwise it sits in the ready queue (or is about to be adopted from
        # another thread), where the pending throw replaces its value.
        return 0

    def _close_task(self, Task task):
        self.unwait(task)
        try:
            task.coro.close()
        except BaseException as exc:  # e.g. a finally block that yields
            self.call_exception_handler({"message": CLOSE_ERROR, "exception": exc, "task": task})
        if not task.finished:
            self.finish(task, None, Cancelled())

    # -- waiting and waking -----------------------------------------------------

    cdef int wait_io(self, int fd, bint writing, object event, Task task, object owner) except -1:
        cdef FdSlot *slot
        cdef uint32_t mask
        self.claim_io(fd, writing)
        slot = &self.fds.slots[fd]
        if (slot.reader_task if writing else slot.writer_task) is not NULL and self.uring is None:
            # epoll keeps one interest set per fd: it must keep the other
            # waiter's direction.  io_uring polls each direction apart, and
            # there the other waiter may wait on a kernel op, not on a poll.
            mask = READABLE | WRITABLE
        else:
            mask = WRITABLE if writing else READABLE
        self.io.watch(self, fd, mask, owner)
        return self.enlist_io(fd, writing, event, task, owner)

    cdef int claim_io(self, int fd, bint writing) except -1:
        """Make ``fd``'s reader (or writer) place free, or raise ResourceBusy."""
        cdef FdSlot *slot
        cdef PyObject *old_owner
        if fd < 0:
            raise ValueError(C.closed_fd(fd))
        fds_ensure(&self.fds, fd)
        slot = &self.fds.slots[fd]
        if (slot.writer_task if writing else slot.reader_task) is not NULL:
            old_owner = slot.writer_owner if writing else slot.reader_owner
            if not is_stale(<object>old_owner if old_owner is not NULL else None, fd):
                raise ResourceBusy(busy_fd(fd))
            # The socket it waited on was closed and its number reused.
            slot = &self.fds.slots[fd]
            old_task = <object>(slot.writer_task if writing else slot.reader_task)
            self.unwait(old_task)
            self.schedule_throw(old_task, ClosedResourceError())
        return 0

    cdef int enlist_io(self, int fd, bint writing, object event, Task task, object owner) except -1:
        """Seat ``task`` as ``fd``'s reader (or writer), its place claimed."""
        cdef FdSlot *slot = &self.fds.slots[fd]
        Py_INCREF(event)
        Py_INCREF(task)
        if owner is not None:
            Py_INCREF(owner)
        if writing:
            slot.writer_event = <PyObject *>event
            slot.writer_task = <PyObject *>task
            slot.writer_owner = <PyObject *>owner if owner is not None else NULL
            task.wait_kind = WAIT_WRITE
        else:
            slot.reader_event = <PyObject *>event
            slot.reader_task = <PyObject *>task
            slot.reader_owner = <PyObject *>owner if owner is not None else NULL
            task.wait_kind = WAIT_READ
        task.wait_fd = fd
        self.io_waiters += 1
        return 0

    def _waiting_on(self, Task task):
        cdef int kind = task.wait_kind
        cdef FdSlot *slot
        cdef PyObject *event = NULL
        if kind == WAIT_READ or kind == WAIT_WRITE:
            # Read from another thread (the monitor), so never trust the slot blindly.
            if 0 <= task.wait_fd < self.fds.size:
                slot = &self.fds.slots[task.wait_fd]
                event = slot.reader_event if kind == WAIT_READ else slot.writer_event
            return <object>event if event is not NULL else None
        if kind == WAIT_TIMER:
            return <object>task.wait_timer.event if task.wait_timer is not NULL and task.wait_timer.event is not NULL else None
        if kind == WAIT_JOIN:
            return task.join_target
        if kind == WAIT_PARKED:
            return "parked"
        return None

    cdef int wait_at(self, double deadline, object event, Task task) except -1:
        task.wait_timer = self.add_timer(deadline, task, event)
        task.wait_kind = WAIT_TIMER
        return 0

    cdef int unwait(self, Task task) except -1:
        """Remove ``task``'s registration, whatever it waits on (a queued task stays queued)."""
        cdef int kind = task.wait_kind
        cdef FdSlot *slot
        cdef PyObject *event
        cdef PyObject *waiter
        cdef PyObject *owner
        if kind <= WAIT_NONE:
            return 0
        task.wait_kind = WAIT_NONE
        if kind == WAIT_READ or kind == WAIT_WRITE:
            slot = &self.fds.slots[task.wait_fd]
            if kind == WAIT_READ:
                event, waiter, owner = slot.reader_event, slot.reader_task, slot.reader_owner
                slot.reader_event = slot.reader_task = slot.reader_owner = NULL
            else:
                event, waiter, owner = slot.writer_event, slot.writer_task, slot.writer_owner
                slot.writer_event = slot.writer_task = slot.writer_owner = NULL
            self.io_waiters -= 1
            Py_XDECREF(owner)
            Py_DECREF(<object>event)
            Py_DECREF(<object>waiter)
            self.io.abandon(self, task.wait_fd, READABLE if kind == WAIT_READ else WRITABLE)
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
        if fd >= self.fds.size:  # never, for an fd the backend was told to watch
            fds_ensure(&self.fds, fd)
        if mask & (READABLE | FAULT):
            if self.fds.slots[fd].reader_task is NULL:
                idle |= READABLE
            else:
                self.wake_io(fd, False)
        if mask & (WRITABLE | FAULT):
            if self.fds.slots[fd].writer_task is NULL:
                idle |= WRITABLE
            else:
                self.wake_io(fd, True)
        if mask & FAULT and self.fds.slots[fd].reader_task is NULL and self.fds.slots[fd].writer_task is NULL:
            idle = READABLE | WRITABLE  # hang-ups are reported unasked: unregister entirely
        if idle:
            if may_block or self.fds.slots[fd].kept_at == self.polls - 1:
                self.fds.slots[fd].kept_at = 0
                self.io.unwatch(self, fd, idle)
            else:
                self.fds.slots[fd].kept_at = self.polls
        return 0

    cdef Task take_io_waiter(self, int fd, bint writing):
        """Unseat ``fd``'s reader (or writer), which must be there, and return it."""
        cdef FdSlot *slot = &self.fds.slots[fd]
        cdef PyObject *event_ptr
        cdef PyObject *task_ptr
        cdef PyObject *owner_ptr
        if writing:
            event_ptr, task_ptr, owner_ptr = slot.writer_event, slot.writer_task, slot.writer_owner
            slot.writer_event = slot.writer_task = slot.writer_owner = NULL
        else:
            event_ptr, task_ptr, owner_ptr = slot.reader_event, slot.reader_task, slot.reader_owner
            slot.reader_event = slot.reader_task = slot.reader_owner = NULL
        self.io_waiters -= 1
        task = <Task>task_ptr
        task.wait_kind = WAIT_NONE  # before any drop below can run Python code
        Py_DECREF(task)  # `task` holds its own reference now
        Py_DECREF(<object>event_ptr)
        Py_XDECREF(owner_ptr)
        return task

    cdef int wake_io(self, int fd, bint writer) except -1:
        cdef FdSlot *slot = &self.fds.slots[fd]
        cdef PyObject *event_ptr
        cdef PyObject *task_ptr
        cdef PyObject *owner_ptr
        cdef Task task
        if writer:
            event_ptr, task_ptr, owner_ptr = slot.writer_event, slot.writer_task, slot.writer_owner
            slot.writer_event = slot.writer_task = slot.writer_owner = NULL
        else:
            event_ptr, task_ptr, owner_ptr = slot.reader_event, slot.reader_task, slot.reader_owner
            slot.reader_event = slot.reader_task = slot.reader_owner = NULL
        self.io_waiters -= 1
        event = <object>event_ptr
        task = <Task>task_ptr
        task.wait_kind = WAIT_NONE  # before any drop below can run Python code
        Py_DECREF(event)  # the locals now hold the slot's references
        Py_DECREF(task)
        Py_XDECREF(owner_ptr)
        if self.resume_event(event, task):
            slot = &self.fds.slots[fd]
            slot.spurious += 1
            if slot.spurious >= ZOMBIE_WAKEUPS:
                # A closed fd's file, kept open by a dup, still reports under
                # this reused number: only a fresh epoll instance forgets it.
                self.io.rebuild(self)
                self.fds.slots[fd].spurious = 0
        else:
            self.fds.slots[fd].spurious = 0
        return 0

    cdef int drain_wake(self) except -1:
        while recv(self.wake_fd, self.read_buffer, READ_BUFFER_SIZE, MSG_DONTWAIT) > 0:
            pass
        # A signal caught in another thread wakes the poll through this fd;
        # its Python handler runs here.
        PyErr_CheckSignals()
        return 0

    # -- timers ------------------------------------------------------------------

    cdef TimerEntry *add_timer(self, double deadline, Task task, object event) except NULL:
        return timers_push(&self.timers, deadline, task, event)

    cdef void cancel_timer(self, TimerEntry *entry) noexcept:
        if timers_cancel(&self.timers, entry):
            self.prune_timers()

    cdef void prune_timers(self) noexcept:
        timers_prune(&self.timers)

    cdef void clear_timers(self) noexcept:
        timers_clear(&self.timers)

    cdef int fire_timers(self) except -1:
        cdef double now = monotonic()
        cdef TimerEntry *entry
        cdef Task task
        while self.timers.size and self.timers.entries[0].deadline <= now:
            entry = timers_pop(&self.timers)
            if entry.task is NULL:
                self.timers.cancelled -= 1
                PyMem_Free(entry)
                continue
            task = <Task>entry.task
            Py_DECREF(task)  # `task` holds its own reference now
            if entry.event is NULL:
                PyMem_Free(entry)
                self.expire(task)
            else:
                event = <object>entry.event
                Py_DECREF(event)
                PyMem_Free(entry)
                task.wait_timer = NULL
                task.wait_kind = WAIT_NONE
                self.resume_event(event, task)
        return 0

    cdef int expire(self, Task task) except -1:
        task.deadline = NULL
        if task.wait_kind > WAIT_NONE:  # still blocked; otherwise it already got its value
            self.unwait(task)
            self.schedule_throw(task, TimeoutError())
        return 0


include "_compiled/gc.pxi"


def run(coro, *, backend=None, debug=False):
    """Run ``coro`` on a new loop, close the loop, and return the result."""
    with EventLoop(backend, debug=debug) as loop:
        return loop.run_until_complete(coro)


include "_compiled/events.pxi"
include "_compiled/completed.pxi"
include "_compiled/sync.pxi"
include "_compiled/queues.pxi"
include "_compiled/streams.pxi"
