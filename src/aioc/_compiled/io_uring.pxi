# The io_uring backend: readiness through IORING_OP_POLL_ADD, one
# io_uring_enter per loop pass that submits what the pass prepared and waits.
#
# Polls are one-shot: io_uring's multishot poll is edge-triggered, and the
# loop is level-triggered (a reader that took part of the data must be woken
# again by what is left).  A one-shot poll checks readiness when it is armed,
# so the rest is reported at once; arming it costs an SQE, not a system call.
# Only the wake-up fd, always watched and always drained, keeps a multishot
# poll.
#
# Each fd has one generation per direction; the poll's user_data carries it,
# so the completion of a poll that was removed or replaced meanwhile (removal
# is itself asynchronous) is recognised as stale and dropped.  A slot's
# `registered` holds the directions with a poll in flight.  A poll holds a
# reference to its file: it is removed as soon as nobody waits on it, or the
# file would stay open (the peer would not see the close) until it fires.

cdef extern from "_compiled/aioc_io_uring.h" nogil:
    const int AIOC_HAVE_IO_URING
    const unsigned AIOC_CQE_MORE
    int aioc_ring_init(aioc_ring *ring, unsigned sq_entries, unsigned cq_entries)
    void aioc_ring_exit(aioc_ring *ring)
    unsigned aioc_ring_unsubmitted(aioc_ring *ring)
    int aioc_ring_enter(aioc_ring *ring, int wait, long long timeout_ns)
    int aioc_ring_poll_add(aioc_ring *ring, int fd, uint32_t events, uint64_t user_data, int multishot)
    int aioc_ring_poll_remove(aioc_ring *ring, uint64_t target, uint64_t user_data)
    unsigned aioc_ring_reap(aioc_ring *ring, aioc_cqe *out, unsigned max, int *overflowed)
    int aioc_io_uring_error()

from libc.errno cimport EBUSY, ETIME

# What a completion is about: user_data's bits 32-33 (the fd is bits 0-31,
# the generation bits 34-63).
cdef enum:
    KIND_READ = 0                  # one-shot poll for READABLE
    KIND_WRITE = 1                 # one-shot poll for WRITABLE
    KIND_WAKE = 2                  # the wake-up fd's multishot poll
    KIND_IGNORED = 3               # a removal's own completion
    GENERATION_MASK = 0x3fffffff
    POLL_NVAL = 0x020              # POLLNVAL: the fd is not open

cdef unsigned ring_sq_entries = 1024
cdef unsigned ring_cq_entries = 8192


def _set_io_uring_ring_size(unsigned sq_entries, unsigned cq_entries):
    """Ring sizes for io_uring loops made from now on; for tests of a full CQ.
    Returns the previous sizes."""
    global ring_sq_entries, ring_cq_entries
    previous = (ring_sq_entries, ring_cq_entries)
    ring_sq_entries, ring_cq_entries = sq_entries, cq_entries
    return previous


cdef inline uint64_t poll_tag(int fd, int kind, uint32_t generation) noexcept:
    return (<uint64_t>generation << 34) | (<uint64_t>kind << 32) | <uint32_t>fd


cdef inline uint32_t kind_bit(int kind) noexcept:
    return WRITABLE if kind == KIND_WRITE else READABLE


@cython.final
cdef class IoUringBackend(Backend):
    def __cinit__(self):
        self.name = "io_uring"
        self.ring.fd = -1

    def __init__(self):
        cdef int rc = aioc_ring_init(&self.ring, ring_sq_entries, ring_cq_entries)
        if rc < 0:
            raise_errno(-rc)
        self.completions = <aioc_cqe *>PyMem_Malloc(self.ring.cq_entries * sizeof(aioc_cqe))
        if self.completions is NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.ring.fd >= 0:
            aioc_ring_exit(&self.ring)
        PyMem_Free(self.completions)
        PyMem_Free(self.generations)

    @property
    def _overflows(self):
        """Passes that found the completion queue overflowed (kept by the kernel)."""
        return self.ring.overflows

    cdef int ensure(self, int fd) except -1:
        cdef int size
        cdef uint32_t *generations
        if fd < self.generations_fds:
            return 0
        size = max(fd + 1, self.generations_fds * 2, 64)
        generations = <uint32_t *>PyMem_Realloc(self.generations, 2 * size * sizeof(uint32_t))
        if generations is NULL:
            raise MemoryError()
        memset(&generations[2 * self.generations_fds], 0, 2 * (size - self.generations_fds) * sizeof(uint32_t))
        self.generations = generations
        self.generations_fds = size
        return 0

    cdef int submit_now(self) except -1:
        """Hand the prepared SQEs to the kernel without waiting: the SQ is full."""
        cdef unsigned before = aioc_ring_unsubmitted(&self.ring)
        cdef int rc = aioc_ring_enter(&self.ring, 0, 0)
        if rc < 0 and rc != -EINTR and rc != -EAGAIN and rc != -EBUSY:
            raise_errno(-rc)
        if aioc_ring_unsubmitted(&self.ring) >= before:
            raise_errno(EBUSY)  # the kernel takes nothing more: never spin on it
        return 0

    cdef int arm(self, int fd, int kind) except -1:
        cdef int slot = 2 * fd + (KIND_WRITE if kind == KIND_WRITE else KIND_READ)
        cdef uint64_t tag = poll_tag(fd, kind, self.generations[slot])
        cdef uint32_t events = WRITABLE if kind == KIND_WRITE else READABLE
        while aioc_ring_poll_add(&self.ring, fd, events, tag, kind == KIND_WAKE) == -EBUSY:
            self.submit_now()
        return 0

    cdef int cancel(self, int fd, int kind) except -1:
        """Remove the live poll of ``fd`` in one direction; its completion, if
        one is still to come, carries an outdated generation from now on."""
        cdef int slot = 2 * fd + kind
        cdef uint64_t target = poll_tag(fd, kind, self.generations[slot])
        self.generations[slot] = (self.generations[slot] + 1) & GENERATION_MASK
        while aioc_ring_poll_remove(&self.ring, target, poll_tag(fd, KIND_IGNORED, 0)) == -EBUSY:
            self.submit_now()
        return 0

    cdef int cancel_bits(self, EventLoop loop, int fd, uint32_t bits) except -1:
        cdef FdSlot *slot
        if self.ring.fd < 0 or fd >= loop.fds.size or fd == loop.wake_fd:
            return 0
        slot = &loop.fds.slots[fd]
        bits &= slot.registered
        if bits & READABLE:
            self.cancel(fd, KIND_READ)
        if bits & WRITABLE:
            self.cancel(fd, KIND_WRITE)
        slot.registered &= ~bits
        if not slot.registered:
            Py_CLEAR(slot.owner)
        return 0

    cdef int watch(self, EventLoop loop, int fd, uint32_t mask, object owner) except -1:
        """Arm a poll for each direction of ``mask`` that has none in flight for
        ``owner``'s open file."""
        cdef FdSlot *slot
        cdef PyObject *old_owner = NULL
        cdef bint same_file
        fds_ensure(&loop.fds, fd)
        self.ensure(fd)
        slot = &loop.fds.slots[fd]
        if fd == loop.wake_fd:
            if not slot.registered:
                self.arm(fd, KIND_WAKE)
                slot.registered = READABLE
            return 0
        if registration_fits(slot, mask, owner):
            return 0
        if slot.registered:
            # Polls in flight for another object may watch a file since closed.
            if slot.owner is not NULL:
                old_owner = aioc_weakref_target(slot.owner)
            same_file = old_owner is not NULL and old_owner != <PyObject *>None and (
                old_owner == <PyObject *>owner or fileno_of(<object>old_owner) == fd)
            if not same_file:
                self.cancel_bits(loop, fd, READABLE | WRITABLE)
        ref = weak_owner(owner)
        slot = &loop.fds.slots[fd]  # fileno_of() ran Python code: look again
        if mask & READABLE and not slot.registered & READABLE:
            self.arm(fd, KIND_READ)
        if mask & WRITABLE and not slot.registered & WRITABLE:
            self.arm(fd, KIND_WRITE)
        slot.registered |= mask & (READABLE | WRITABLE)
        Py_CLEAR(slot.owner)
        if ref is not None:
            Py_INCREF(ref)
            slot.owner = <PyObject *>ref
        return 0

    cdef int unwatch(self, EventLoop loop, int fd, uint32_t mask) except -1:
        return self.cancel_bits(loop, fd, mask)

    cdef int abandon(self, EventLoop loop, int fd, uint32_t mask) except -1:
        # Unlike epoll's registration, a poll left behind keeps its file open.
        return self.cancel_bits(loop, fd, mask)

    cdef int forget(self, EventLoop loop, int fd) except -1:
        # The socket is closed right after: submit the removals now, so that
        # closing it really closes the file (and the peer sees it at once).
        cdef int rc
        self.cancel_bits(loop, fd, READABLE | WRITABLE)
        if self.ring.fd >= 0 and aioc_ring_unsubmitted(&self.ring):  # the waiter's own removal, too
            rc = aioc_ring_enter(&self.ring, 0, 0)
            if rc < 0 and rc != -EINTR and rc != -EAGAIN and rc != -EBUSY:
                raise_errno(-rc)
        return 0

    cdef int rebuild(self, EventLoop loop) except -1:
        cdef int fd
        cdef uint32_t bits
        for fd in range(loop.fds.size):
            bits = loop.fds.slots[fd].registered
            if bits and fd != loop.wake_fd:
                if bits & READABLE:
                    self.cancel(fd, KIND_READ)
                    self.arm(fd, KIND_READ)
                if bits & WRITABLE:
                    self.cancel(fd, KIND_WRITE)
                    self.arm(fd, KIND_WRITE)
        return 0

    cdef int poll(self, EventLoop loop, double timeout) except -1:
        cdef int rc, overflowed = 0
        cdef bint may_block = timeout > 0.0
        cdef long long ns
        cdef aioc_cqe *cqe
        if self.backlog_at == self.backlog_end:
            if may_block:
                ns = <long long>ceil(timeout * 1e9)
                with nogil:
                    rc = aioc_ring_enter(&self.ring, 1, ns)
            else:
                rc = aioc_ring_enter(&self.ring, 0, 0)
            if rc == -EINTR:
                PyErr_CheckSignals()  # runs Python signal handlers
            elif rc < 0 and rc != -ETIME and rc != -EBUSY and rc != -EAGAIN:
                # EBUSY/EAGAIN: completions must be reaped before more is taken.
                raise_errno(-rc)
            self.backlog_at = 0
            self.backlog_end = aioc_ring_reap(&self.ring, self.completions, self.ring.cq_entries, &overflowed)
            # With overflowed, the kernel holds more: the next enter moves
            # them into the CQ, and finds them there without waiting.
        while self.backlog_at < self.backlog_end:
            cqe = &self.completions[self.backlog_at]
            self.backlog_at += 1  # first: an exception below must not replay it
            self.complete(loop, cqe, may_block)
        return 0

    cdef int complete(self, EventLoop loop, aioc_cqe *cqe, bint may_block) except -1:
        cdef int fd = <int>(cqe.user_data & 0xffffffff)
        cdef int kind = <int>((cqe.user_data >> 32) & 3)
        cdef uint32_t generation = <uint32_t>(cqe.user_data >> 34)
        cdef int direction = KIND_WRITE if kind == KIND_WRITE else KIND_READ
        cdef uint32_t mask
        if kind == KIND_IGNORED or fd >= self.generations_fds:
            return 0
        if self.generations[2 * fd + direction] != generation:
            return 0  # removed or replaced since: stale
        if kind == KIND_WAKE:
            if not cqe.flags & AIOC_CQE_MORE:  # the kernel ended it: arm anew
                self.generations[2 * fd] = (generation + 1) & GENERATION_MASK
                self.arm(fd, KIND_WAKE)
            return loop.dispatch_io(fd, READABLE, may_block)
        # A one-shot poll is spent by its completion.
        self.generations[2 * fd + direction] = (generation + 1) & GENERATION_MASK
        loop.fds.slots[fd].registered &= ~kind_bit(kind)
        if cqe.res < 0 or cqe.res & POLL_NVAL:
            # Not pollable (closed, say): the waiters' own I/O raises the real error.
            mask = FAULT
        else:
            mask = <uint32_t>cqe.res & (kind_bit(kind) | FAULT)
        if mask:
            loop.dispatch_io(fd, mask, may_block)
        return 0

    cdef int close(self) except -1:
        if self.ring.fd >= 0:
            aioc_ring_exit(&self.ring)
        return 0


cdef int io_uring_errno = -1      # -1: not probed yet; 0: io_uring works


cdef int probe_io_uring() noexcept:
    """0 if io_uring can be used here, else the errno io_uring_setup failed with."""
    global io_uring_errno
    if io_uring_errno < 0:
        io_uring_errno = aioc_io_uring_error()
    return io_uring_errno
