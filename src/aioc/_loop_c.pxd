# The compiled loop's C-level interface.  Every rule it implements is
# specified by the pure-Python loop in _loop_py.py.

from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data


# A timer heap node.  The heap and, while it is armed, the task's
# wait_timer or deadline field point at it; cancelling clears ``task`` and
# the node is freed when it reaches the top or the heap is pruned.
cdef struct TimerEntry:
    double deadline
    unsigned long long seq     # tie-breaker: equal deadlines fire in order
    PyObject *task             # owned; NULL once cancelled
    PyObject *event            # owned; NULL marks a Timeout deadline


# What the loop knows about one file descriptor.
cdef struct FdSlot:
    PyObject *reader_event     # owned (event, task) pairs, NULL when free
    PyObject *reader_task
    PyObject *writer_event
    PyObject *writer_task
    PyObject *owner            # owned weakref to the socket epoll registered, or NULL
    uint32_t registered        # the mask epoll holds for this fd, 0 if none
    int spurious               # wake-ups in a row that found nothing to do
    unsigned long long kept_at # the poll that last kept this unwaited registration


cdef class ReadyQueue:
    # A ring of (task, value) pairs: items[2*i] is a task, items[2*i+1] its value.
    cdef PyObject **items
    cdef Py_ssize_t head
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity   # in pairs, a power of two

    cdef int push(self, object task, object value) except -1
    cdef void pop(self, PyObject **task, PyObject **value) noexcept
    cdef int grow(self) except -1
    cdef void clear(self) noexcept


cdef class Task:
    cdef object coro
    cdef EventLoop loop
    cdef bint finished
    cdef bint log_exception        # an exception nobody has looked at yet
    cdef object value              # the return value
    cdef object error              # the exception it ended with
    cdef object throw_next         # thrown in at its next step
    cdef int wait_kind             # what it is blocked on: see WAIT_* in the .pyx
    cdef int wait_fd
    cdef TimerEntry *wait_timer
    cdef Task join_target
    cdef TimerEntry *deadline      # armed by a Timeout
    cdef list joiners              # (event, task) pairs waiting in Join
    cdef Task prev_live            # the loop's list of live tasks
    cdef Task next_live
    cdef object __weakref__


cdef class EventLoop:
    cdef readonly ReadyQueue _ready
    cdef readonly str backend
    cdef bint use_epoll
    cdef int epfd
    cdef epoll_event *events
    cdef FdSlot *fds
    cdef int nfds                  # capacity of fds
    cdef Py_ssize_t io_waiters     # readers plus writers registered
    cdef unsigned long long polls  # completed epoll waits, counted from 1
    cdef TimerEntry **timers       # binary heap on (deadline, seq)
    cdef Py_ssize_t ntimers
    cdef Py_ssize_t timer_capacity
    cdef Py_ssize_t cancelled_timers
    cdef unsigned long long timer_seq
    cdef Task live_head
    cdef Task live_tail
    cdef Py_ssize_t live_count
    cdef PyObject *current         # the task being stepped (borrowed)
    cdef bint running
    cdef bint stopping
    cdef bint closed
    cdef bint accept_backoff_logged
    cdef char *read_buffer
    cdef int wake_fd
    cdef object wake_r
    cdef object wake_w
    cdef object threadsafe
    cdef object exception_handler

    # scheduling
    cpdef Task call_soon(self, object coro)
    cdef Task new_task(self, object coro)
    cdef int schedule_new(self, Task task) except -1
    cdef int run_once(self) except -1
    cdef int step(self, Task task, object value) except -1
    cdef int step_raised(self, Task task) except -1
    cdef int yield_event(self, object event, Task task) except -1
    cdef int yield_guarded(self, object event, Task task) except -1
    cdef bint rewait_read(self, ReadEvent event, Task task) except -1
    cdef int resume_event(self, object event, Task task) except -1
    cdef int resume_guarded(self, object event, Task task) except -1
    cdef int recv_for(self, ReadEvent event, Task task) except -1
    cdef int schedule_throw(self, Task task, object exc) except -1
    cdef int finish(self, Task task, object value, object error) except -1
    cdef int cancel_task(self, Task task) except -1
    cdef int unwait(self, Task task) except -1
    # waiting
    cdef int wait_io(self, int fd, bint writing, object event, Task task) except -1
    cdef int wait_timer(self, double deadline, object event, Task task) except -1
    cdef int wait_join(self, object target, object event, Task task) except -1
    cdef int arm_deadline(self, Task task, double deadline) except -1
    cdef int send_all(self, SendAll event, Task task) except -1
    cdef int accept_for(self, AcceptEvent event, Task task) except -1
    # polling
    cdef int ensure_fd(self, int fd) except -1
    cdef int watch(self, int fd, uint32_t mask, object owner) except -1
    cdef int unwatch(self, int fd, uint32_t mask) except -1
    cdef void forget(self, int fd) noexcept
    cdef void forget_slot(self, int fd) noexcept
    cdef int rebuild(self) except -1
    cdef int poll_epoll(self, double timeout) except -1
    cdef int poll_select(self, double timeout) except -1
    cdef int dispatch_io(self, int fd, uint32_t mask, bint may_block) except -1
    cdef int wake_io(self, int fd, bint writer) except -1
    cdef int drain_wake(self) except -1
    # timers
    cdef TimerEntry *add_timer(self, double deadline, Task task, object event) except NULL
    cdef void cancel_timer(self, TimerEntry *entry) noexcept
    cdef void prune_timers(self) noexcept
    cdef void clear_timers(self) noexcept
    cdef int fire_timers(self) except -1


# Every event type declares `suspended` first: the C slots that make events
# their own awaitable iterators read it right after the object header.
cdef class BuiltinEvent:
    cdef bint suspended

cdef class ReadEvent:
    cdef bint suspended
    cdef public object sock
    cdef public Py_ssize_t nbytes

cdef class WriteEvent(BuiltinEvent):
    cdef public object sock
    cdef public object data

cdef class SendAll:
    cdef bint suspended
    cdef public object sock
    cdef public object data
    cdef public Py_ssize_t sent

cdef class AcceptEvent(BuiltinEvent):
    cdef public object sock

cdef class ConnectEvent(BuiltinEvent):
    cdef public object sock
    cdef public object address

cdef class Sleep:
    cdef bint suspended
    cdef public double seconds

cdef class Spawn(BuiltinEvent):
    cdef public object coro

cdef class Join(BuiltinEvent):
    cdef public object task
