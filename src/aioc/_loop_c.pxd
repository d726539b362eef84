# The map of the compiled loop.  Every rule it implements is specified by the
# pure-Python loop in _loop_py.py; a C field or method named `x` here is
# `_x` there (Task.finished is Task._finished, EventLoop.step is
# EventLoop._step), and tests/test_parity.py holds the two to that.
#
# _loop_c.pyx holds the scheduler (EventLoop) and includes one file per
# concern from _compiled/:
#   ready.pxi      the ready ring of (task, value) pairs and its Python view
#   tasks.pxi      Task
#   timers.pxi     the timer heap
#   fdtable.pxi    the per-fd table of waiters and registrations
#   io_backend.pxi Backend, the one interface of the backends, and the chooser
#   io_epoll.pxi   the epoll backend       } twins of _io_epoll.py
#   io_select.pxi  the select backend      } and _io_select.py
#   io_uring.pxi   the io_uring backend (compiled loop only)
#   fastpaths.pxi  C I/O for the built-in events
#   events.pxi     the built-in events, compiled
#   completed.pxi  Completed, the awaitable of an operation done at once
#   sync.pxi       Lock, compiled          } twins of aioc.sync.Lock
#   queues.pxi     Queue, compiled         } and aioc.queues.Queue
#   streams.pxi    Stream and its buffer, compiled (twins of streams.py)
#   gc.pxi         garbage-collector support for the C-held references
# and C that Cython cannot express from _compiled/aioc.h (io_uring's ring
# protocol in _compiled/aioc_io_uring.h).

from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "_compiled/aioc_epoll.h" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data


cdef extern from "_compiled/aioc_io_uring.h" nogil:
    ctypedef struct aioc_ring:
        int fd
        unsigned sq_entries
        unsigned cq_entries
        unsigned long long overflows

    ctypedef struct aioc_cqe:
        uint64_t user_data
        int res
        uint32_t flags


# -- ready.pxi ------------------------------------------------------------------

# A ring of (task, value) pairs: items[2*i] is a task, items[2*i+1] its value.
cdef struct Ring:
    PyObject **items           # owned references
    Py_ssize_t head
    Py_ssize_t count
    Py_ssize_t capacity        # in pairs, a power of two

cdef int ring_init(Ring *ring) except -1
cdef int ring_push(Ring *ring, object task, object value) except -1
cdef void ring_pop(Ring *ring, PyObject **task, PyObject **value) noexcept
cdef int ring_grow(Ring *ring) except -1
cdef void ring_clear(Ring *ring) noexcept
cdef void ring_free(Ring *ring) noexcept

cdef class ReadyQueue:
    # `loop._ready`: append((task, value)) and len() for events of the tutorial's style.
    cdef EventLoop loop


# -- tasks.pxi ------------------------------------------------------------------

cdef class Task:
    cdef object coro
    cdef EventLoop loop
    cdef bint finished
    cdef bint log_exception        # an exception nobody has looked at yet
    cdef object value              # the return value
    cdef object error              # the exception it ended with
    cdef object throw_next         # thrown in at its next step
    cdef int wait_kind             # what it is blocked on: WAIT_*
    cdef int wait_fd
    cdef TimerEntry *wait_timer
    cdef Task join_target
    cdef TimerEntry *deadline      # armed by a Timeout
    cdef list joiners              # (event, task) pairs waiting in Join
    cdef int shield_depth          # shields entered: a cancel waits until they are left
    cdef bint cancel_pending
    cdef object task_name          # None: named after what it runs
    # The links are borrowed: the loop owns one reference per live task (gc.pxi
    # visits it), so that the collector does not walk the list task by task.
    # C only: the loop's list of live tasks, a dict in the pure loop.
    cdef PyObject *prev_live
    cdef PyObject *next_live
    cdef object __weakref__

cdef class FailedTask(Task):
    pass


# -- timers.pxi -----------------------------------------------------------------

# A timer heap node.  The heap and, while it is armed, the task's wait_timer
# or deadline field point at it; cancelling clears ``task`` and the node is
# freed when it reaches the top or the heap is pruned.
cdef struct TimerEntry:
    double deadline
    unsigned long long seq     # tie-breaker: equal deadlines fire in order
    PyObject *task             # owned; NULL once cancelled
    PyObject *event            # owned; NULL marks a Timeout deadline

cdef struct TimerHeap:
    TimerEntry **entries       # binary heap on (deadline, seq)
    Py_ssize_t size
    Py_ssize_t capacity
    Py_ssize_t cancelled
    unsigned long long seq

cdef TimerEntry *timers_push(TimerHeap *heap, double deadline, Task task, object event) except NULL
cdef TimerEntry *timers_pop(TimerHeap *heap) noexcept
cdef bint timers_cancel(TimerHeap *heap, TimerEntry *entry) noexcept
cdef void timers_prune(TimerHeap *heap) noexcept
cdef void timers_clear(TimerHeap *heap) noexcept


# -- fdtable.pxi ----------------------------------------------------------------

# What the loop knows about one file descriptor.
cdef struct FdSlot:
    PyObject *reader_event     # owned (event, task, owner) of the reader, NULL when free
    PyObject *reader_task
    PyObject *reader_owner     # may be NULL: no socket object
    PyObject *writer_event     # the same for the writer
    PyObject *writer_task
    PyObject *writer_owner
    PyObject *owner            # owned weakref to the socket epoll registered, or NULL
    uint32_t registered        # the mask epoll holds for this fd, 0 if none
    int spurious               # wake-ups in a row that found nothing to do
    unsigned long long kept_at # the poll that last kept this unwaited registration

cdef struct FdTable:
    FdSlot *slots
    int size

cdef int fds_ensure(FdTable *table, int fd) except -1
cdef void fds_forget_registration(FdTable *table, int fd) noexcept
cdef object owner_ref(object owner)
cdef void fds_clear(FdTable *table) noexcept


# -- io_epoll.pxi, io_select.pxi: the backends' one interface ---------------------

cdef class Backend:
    cdef readonly str name
    # Make sure `fd` reports `mask` for `owner`'s open file.
    cdef int watch(self, EventLoop loop, int fd, uint32_t mask, object owner) except -1
    # Stop reporting `mask` on `fd`: no task waits for it.
    cdef int unwatch(self, EventLoop loop, int fd, uint32_t mask) except -1
    # Drop `fd`'s registration before its socket is closed.
    cdef int forget(self, EventLoop loop, int fd) except -1
    # Re-register every live registration afresh.
    cdef int rebuild(self, EventLoop loop) except -1
    # The task waiting for `mask` on `fd` left without being woken.
    cdef int abandon(self, EventLoop loop, int fd, uint32_t mask) except -1
    # Wait up to `timeout` seconds; EventLoop.dispatch_io for each ready fd.
    cdef int poll(self, EventLoop loop, double timeout) except -1
    cdef int close(self) except -1

cdef class EpollBackend(Backend):
    cdef int epfd
    cdef epoll_event *events

cdef class SelectBackend(Backend):
    pass

# A recv, accept or send the kernel does for a built-in event (io_uring
# only).  Its address is its completions' user_data; it lives until its last
# completion (an accept is multishot: its last comes without IORING_CQE_F_MORE).
cdef struct UringOp:
    int kind                   # KIND_RECV, KIND_SEND or KIND_ACCEPT
    int fd
    bint orphaned              # cancelled: a recv's data is kept, a send's result dropped
    bint detached              # no longer its fd's op (the socket was forgotten): dropped
    int idle_passes            # accept: passes it has stayed armed without a waiter
    bint idle_listed           # in the backend's list of ops that may have lost their waiter
    UringOp *idle_prev
    UringOp *idle_next
    PyObject *owner            # owned: the socket
    PyObject *event            # owned: the SendAll it sends for (its `sent` is kept up)
    PyObject *data             # owned: the bytes object a send reads, taken when it starts
    Py_ssize_t size            # one-shot recv: bytes asked; send: bytes of the data
    Py_ssize_t offset          # send: where the kernel is in the data
    Py_buffer view             # send of a non-bytes buffer: held until the completion
    bint viewed
    uint64_t address[16]       # accept: the peer's sockaddr_storage (aligned as it), written by the kernel
    unsigned address_length
    UringOp *prev              # the backend's list of live ops
    UringOp *next

cdef class IoUringBackend(Backend):
    cdef aioc_ring ring
    cdef aioc_cqe *completions     # copied out of the CQ, dispatched from here
    cdef unsigned backlog_at       # completions[backlog_at:backlog_end] are
    cdef unsigned backlog_end      # still to dispatch (an exception cut a pass short)
    cdef uint32_t *generations     # per fd and direction: the tag of its live poll
    cdef UringOp **ops             # per fd and direction: its recv or send in flight
    cdef int generations_fds       # fds the arrays cover
    cdef UringOp *live_ops         # every op the kernel still owns
    cdef dict stashed              # fd -> [weakref to socket, bytes received for no reader, errno after them]
    cdef list stash_readers        # fds whose reader gets stashed bytes after the next enter
    cdef dict accepted             # listener fd -> (weakref to listener, [(conn, peer) accepted for no acceptor])
    cdef UringOp *idle_ops         # accepts that may have lost their waiter (idle_next)
    cdef set backlog_fds           # listener fds with connections in `accepted`
    cdef int mark_idle(self, UringOp *op) except -1
    cdef void unlink_idle(self, UringOp *op) noexcept
    cdef int op_waited(self, EventLoop loop, UringOp *op) except -1
    cdef int check_idle(self, EventLoop loop) except -1
    cdef bint recv_deliver(self, EventLoop loop, UringOp *op, char *buffer, int res, bint waited) except -1
    cdef object accepted_peer(self, UringOp *op, int conn_fd, object conn)
    cdef int accept_deliver(self, EventLoop loop, UringOp *op, int res) except -1
    cdef object take_accepted(self, int fd, object listener)
    cdef int drop_accepted(self, int fd) except -1
    cdef int arm(self, int fd, int kind) except -1
    cdef int cancel(self, int fd, int kind) except -1
    cdef int cancel_bits(self, EventLoop loop, int fd, uint32_t bits) except -1
    cdef int cancel_op(self, int fd, int direction, bint detach) except -1
    cdef int submit_now(self) except -1
    cdef int ensure(self, int fd) except -1
    cdef int entered(self, int rc) except -1
    cdef int complete(self, EventLoop loop, aioc_cqe *cqe, bint may_block) except -1
    cdef uint32_t sparing_ops(self, int fd, uint32_t fault) noexcept
    cdef UringOp *new_op(self, int kind, int fd, object owner) except NULL
    cdef void free_op(self, UringOp *op) noexcept
    cdef int submit_op(self, UringOp *op) except -1
    cdef int start_recv(self, int fd, object sock, Py_ssize_t size) except -1
    cdef int start_send(self, EventLoop loop, SendAll event, Task task, int fd) except -1
    cdef int recv_done(self, EventLoop loop, UringOp *op, int res, uint32_t flags) except -1
    cdef int send_done(self, EventLoop loop, UringOp *op, int res) except -1
    cdef int start_accept(self, int fd, object listener) except -1
    cdef int accept_done(self, EventLoop loop, UringOp *op, int res, uint32_t flags) except -1
    cdef int stash(self, int fd, object sock, object data, int error) except -1
    cdef object take_stash(self, int fd, object sock, Py_ssize_t nbytes)
    cdef bint has_stash(self, int fd, object sock)
    cdef int deliver_stash(self, EventLoop loop, int fd) except -1
    cdef void drain_ops(self) noexcept


# -- _loop_c.pyx: the scheduler ---------------------------------------------------

cdef class EventLoop:
    cdef readonly str backend
    cdef Backend io
    cdef Ring ready
    cdef FdTable fds
    cdef TimerHeap timers
    cdef Py_ssize_t io_waiters     # readers plus writers registered
    cdef unsigned long long polls  # completed polls, counted from 1
    cdef PyObject *live_head       # the live tasks, each owned once (see Task.prev_live)
    cdef PyObject *live_tail
    cdef Py_ssize_t live_count
    cdef PyObject *current         # the task being stepped (borrowed)
    cdef PyObject *yielding        # the task whose event's _yield runs (borrowed)
    cdef object completed_value    # what loop.complete gave it
    cdef int immediate_left        # immediate resumptions left in this step
    cdef bint running
    cdef bint stopping
    cdef bint closed
    cdef bint debug
    cdef public double slow_step   # with debug, a longer step is logged (seconds)
    cdef char *read_buffer
    cdef int wake_fd
    cdef object wake_r
    cdef object wake_w
    cdef object threadsafe
    cdef list close_callbacks
    cdef object exception_handler

    # the contract with events (aioc.lowlevel)
    cpdef double time(self) noexcept
    cpdef wait_readable(self, fd, event, Task task, owner=*)
    cpdef wait_writable(self, fd, event, Task task, owner=*)
    cpdef wait_until(self, deadline, event, Task task)
    cpdef wait_task(self, target, event, Task task)
    cpdef set_deadline(self, Task task, deadline)
    cpdef shield(self, Task task)
    cpdef bint unshield(self, Task task) except -1
    cpdef park(self, Task task)
    cpdef bint reschedule(self, Task task, value=*) except -1
    cpdef complete(self, Task task, value=*)
    # scheduling
    cpdef Task call_soon(self, object coro)
    cdef int check_open(self) except -1
    cdef Task new_task(self, object coro)
    cdef int schedule_new(self, Task task) except -1
    cdef int push(self, Task task, object value) except -1
    cdef int adopt_threadsafe(self) except -1
    cdef int run_once(self) except -1
    cdef int step(self, Task task, object value) except -1
    cdef int resume_task(self, Task task, object value) except -1
    cdef int step_timed(self, Task task, object value) except -1
    cdef int yield_event(self, object event, Task task) except -1
    cdef int resume_event(self, object event, Task task) except -1
    cdef int schedule_throw(self, Task task, object exc) except -1
    cdef int finish(self, Task task, object value, object error) except -1
    cdef int cancel_task(self, Task task) except -1
    cdef int unwait(self, Task task) except -1
    # C only: the slow, exception-handling halves of step and of the dispatchers
    cdef int step_raised(self, Task task) except -1
    cdef int yield_guarded(self, object event, Task task) except -1
    cdef int resume_guarded(self, object event, Task task) except -1
    # C only: complete() for the C fast paths, without a Python call
    cdef int finish_at_once(self, Task task, object value) except -1
    # waiting and waking
    cdef int wait_io(self, int fd, bint writing, object event, Task task, object owner) except -1
    cdef int wait_at(self, double deadline, object event, Task task) except -1
    cdef int dispatch_io(self, int fd, uint32_t mask, bint may_block) except -1
    cdef int wake_io(self, int fd, bint writer) except -1
    cdef int drain_wake(self) except -1
    # timers
    cdef TimerEntry *add_timer(self, double deadline, Task task, object event) except NULL
    cdef void cancel_timer(self, TimerEntry *entry) noexcept
    cdef void prune_timers(self) noexcept
    cdef void clear_timers(self) noexcept
    cdef int fire_timers(self) except -1
    cdef int expire(self, Task task) except -1
    # C only: io_uring's completion I/O (io_uring.pxi) seats and unseats waiters itself
    cdef IoUringBackend uring      # `io` when it is io_uring, else None
    cdef int claim_io(self, int fd, bint writing) except -1
    cdef int enlist_io(self, int fd, bint writing, object event, Task task, object owner) except -1
    cdef Task take_io_waiter(self, int fd, bint writing)


# -- events.pxi -------------------------------------------------------------------
# Every event type declares `suspended` first: the C slots that make events
# their own awaitable iterators read it right after the object header.

cdef class BuiltinEvent:
    cdef bint suspended

cdef class ReadEvent:
    cdef bint suspended
    cdef public object sock
    cdef readonly Py_ssize_t _nbytes

cdef class WriteEvent(BuiltinEvent):
    cdef public object sock
    cdef public object data

cdef class SendAll:
    cdef bint suspended
    cdef public object sock
    cdef readonly object _data
    cdef public Py_ssize_t _sent   # checked where C reads it

cdef class AcceptEvent(BuiltinEvent):
    cdef public object sock

cdef class ConnectEvent(BuiltinEvent):
    cdef public object sock
    cdef public object address

cdef class RecvFrom:
    cdef bint suspended
    cdef public object sock
    cdef readonly Py_ssize_t _max_bytes

cdef class SendTo:
    cdef bint suspended
    cdef public object sock
    cdef readonly object _data
    cdef readonly object _address

cdef class Sleep:
    cdef bint suspended
    cdef readonly double _seconds

cdef class Spawn(BuiltinEvent):
    cdef public object coro

cdef class Join(BuiltinEvent):
    cdef public object task


# -- completed.pxi ----------------------------------------------------------------

cdef class Completed:
    cdef object value              # the only field: aioc.h reads it


# -- sync.pxi -----------------------------------------------------------------------

cdef class Lock:
    cdef bint _locked
    cdef readonly object _waiters  # deque of aioc.sync.Waiter
    # C only
    cdef int pass_on(self) except -1


# -- queues.pxi ---------------------------------------------------------------------

cdef class Queue:
    cdef Py_ssize_t _maxsize
    cdef readonly object _getters  # deques of aioc.sync.Waiter
    cdef readonly object _putters
    cdef readonly object _joiners
    cdef readonly Py_ssize_t _reserved
    cdef readonly Py_ssize_t _unfinished
    # C only
    cdef list items                # items[head:] are queued, oldest first
    cdef Py_ssize_t head
    cdef Py_ssize_t count(self) noexcept
    cdef int push(self, object item) except -1
    cdef object pop(self)
    cdef object take(self)
    cdef bint is_full(self) noexcept
    cdef int deliver(self, object item) except -1
    cdef int wake_putters(self) except -1
# -- streams.pxi ------------------------------------------------------------------

cdef class StreamBuffer:
    cdef char *data
    cdef Py_ssize_t start          # the unconsumed bytes are data[start:end]
    cdef Py_ssize_t end
    cdef Py_ssize_t capacity
    cdef char *reserve(self, Py_ssize_t n) except NULL
    cdef int extend(self, const char *data, Py_ssize_t n) except -1
    cdef Py_ssize_t find_in(self, const char *separator, Py_ssize_t width, Py_ssize_t begin, Py_ssize_t end) noexcept
    cdef bytes take_bytes(self, Py_ssize_t n)

cdef class Stream:
    cdef readonly object _sock
    cdef readonly object _tls
    cdef readonly StreamBuffer _buffer
    cdef public bint _eof
    cdef public bint _closed
    cdef public object _peername

cdef class StreamRead:
    cdef Stream stream
    cdef int kind                  # STREAM_READ, STREAM_READ_EXACTLY or STREAM_READ_UNTIL
    cdef Py_ssize_t size           # max_bytes, n or limit
    cdef bytes separator
    cdef Py_ssize_t searched       # no separator starts before this offset
    cdef bint suspended            # its iterator yielded it: a task waits through it
    cdef Py_ssize_t receive_size(self) noexcept

cdef int stream_receive_for(EventLoop loop, StreamRead read, Task task) except -1
cdef int check_driven(StreamRead read) except -1
