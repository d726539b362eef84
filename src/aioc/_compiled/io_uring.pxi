# The io_uring backend: readiness through IORING_OP_POLL_ADD, one
# io_uring_enter per loop pass that submits what the pass prepared and waits.
# When the pass has SQEs to submit or the kernel flags completions ready to
# post (IORING_SQ_TASKRUN), that enter first runs without waiting and with
# the GIL kept: on a busy loop it is all the pass needs, and it spares the
# GIL's release and retaking; only if it brings nothing does a second one wait.
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
#
# The built-in ReadEvent, AcceptEvent and SendAll skip readiness: the kernel
# receives (IORING_OP_RECV) into a buffer it picks from a provided-buffer
# ring only once data is there (a waiting reader holds no memory; the bytes
# are copied out and the buffer given back at once), accepts (multishot
# IORING_OP_ACCEPT) for a TCP listener, and sends what a first send() left
# (IORING_OP_SEND), holding the data.  Such an op is a UringOp, whose
# address is its user_data (polls' tags have bit 63 set instead); it lives
# until its last completion, whatever happens to its waiter meanwhile.
#
# A recv is one-shot, armed only while a ReadEvent waits: bytes are taken
# from the socket only for a reader that asked, so a reader that waits by
# readiness (a custom event, a TLS layer) finds the next bytes in the
# socket, where its own recv looks.  A multishot recv would take them into
# the loop's queue, out of that reader's sight, and measured no faster.
# Only a recv whose reader was cancelled while the kernel had it armed can
# bring bytes nobody waits for: they are kept in `stashed` for the next
# ReadEvent.
#
# A multishot accept stays armed while its listener is accepted from in a
# loop, so that each wait costs no SQE.  Connections it completes with no
# waiter are queued in `accepted` for the next AcceptEvent; past
# ACCEPT_BACKLOG of them the accept is cancelled and the kernel's listen
# queue holds the rest until a waiter drains the queue and arms it anew.
# An accept holds its listener's file open, and closing a socket directly
# tells the loop nothing.  So every enter first looks at the accepts that
# lost their waiter (`idle_ops`): one whose listener was closed is
# cancelled there, and so is one still without a waiter after IDLE_PASSES
# passes (its task went elsewhere), which also bounds that looking to a few
# times per wait; late completions are queued as above, and a waiter that
# comes meanwhile adopts the op.  A listener found closed there has its
# queued connections closed.

cdef extern from "_compiled/aioc_io_uring.h" nogil:
    const int AIOC_HAVE_IO_URING
    const unsigned AIOC_CQE_MORE
    int aioc_ring_init(aioc_ring *ring, unsigned sq_entries, unsigned cq_entries)
    void aioc_ring_exit(aioc_ring *ring)
    unsigned aioc_ring_unsubmitted(aioc_ring *ring)
    int aioc_ring_work_pending(aioc_ring *ring)
    int aioc_ring_enter(aioc_ring *ring, int wait, long long timeout_ns)
    int aioc_ring_poll_add(aioc_ring *ring, int fd, uint32_t events, uint64_t user_data, int multishot)
    int aioc_ring_poll_remove(aioc_ring *ring, uint64_t target, uint64_t user_data)
    int aioc_ring_recv(aioc_ring *ring, int fd, unsigned size, uint64_t user_data)
    int aioc_ring_provide_buffers(aioc_ring *ring, unsigned count, unsigned size)
    void aioc_ring_return_buffer(aioc_ring *ring, unsigned bid)
    char *aioc_ring_buffer(aioc_ring *ring, unsigned bid)
    const unsigned AIOC_CQE_BUFFER
    int aioc_ring_send(aioc_ring *ring, int fd, const void *data, unsigned size, uint64_t user_data)
    int aioc_ring_cancel(aioc_ring *ring, uint64_t target, uint64_t user_data)
    int aioc_ring_accept_multishot(aioc_ring *ring, int fd, void *address, unsigned *length, uint64_t user_data)
    int aioc_ring_cancel_all(aioc_ring *ring, uint64_t user_data)
    unsigned aioc_ring_reap(aioc_ring *ring, aioc_cqe *out, unsigned max, int *overflowed)
    int aioc_io_uring_error()

from libc.errno cimport EBUSY, ETIME

cdef extern from "errno.h" nogil:
    enum:
        ECANCELED
        ENOBUFS

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

# What a poll's completion is about: user_data's bits 32-33 (the fd is bits
# 0-31, the generation bits 34-62, and bit 63 tells a poll from a UringOp).
cdef enum:
    KIND_READ = 0                  # one-shot poll for READABLE
    KIND_WRITE = 1                 # one-shot poll for WRITABLE
    KIND_WAKE = 2                  # the wake-up fd's multishot poll
    KIND_IGNORED = 3               # a removal's or a cancel's own completion
    KIND_RECV = 4                  # UringOp kinds
    KIND_SEND = 5
    KIND_ACCEPT = 6
    GENERATION_MASK = 0x1fffffff
    POLL_NVAL = 0x020              # POLLNVAL: the fd is not open
    MAX_SEND = 1 << 30             # bytes one SEND is given at most
    CLOSE_WAIT_NS = 1000000000     # how long closing waits for the kernel to let go of buffers
    ACCEPT_BACKLOG = 32            # connections queued for no acceptor past which an accept is cancelled
    IDLE_PASSES = 16               # passes a multishot op stays armed without a waiter

cdef uint64_t POLL_TAG = 1ULL << 63

# The ring has one issuer (IORING_SETUP_SINGLE_ISSUER): the thread that first ran the loop.
IO_URING_OTHER_THREAD = "an io_uring loop runs only in the thread that first ran it"

cdef unsigned ring_sq_entries = 1024
cdef unsigned ring_cq_entries = 8192
cdef unsigned ring_buffers = 64     # provided recv buffers of READ_BUFFER_SIZE (a power of two)


def _set_io_uring_ring_size(unsigned sq_entries, unsigned cq_entries, unsigned buffers=64):
    """Ring sizes (and recv buffers) for io_uring loops made from now on; for
    tests of a full CQ or of readers outnumbering buffers.  Returns the
    previous values."""
    global ring_sq_entries, ring_cq_entries, ring_buffers
    previous = (ring_sq_entries, ring_cq_entries, ring_buffers)
    ring_sq_entries, ring_cq_entries, ring_buffers = sq_entries, cq_entries, buffers
    return previous


cdef inline uint64_t poll_tag(int fd, int kind, uint32_t generation) noexcept:
    return POLL_TAG | (<uint64_t>generation << 34) | (<uint64_t>kind << 32) | <uint32_t>fd


cdef inline uint32_t kind_bit(int kind) noexcept:
    return WRITABLE if kind == KIND_WRITE else READABLE


@cython.final
cdef class IoUringBackend(Backend):
    def __cinit__(self):
        self.name = "io_uring"
        self.ring.fd = -1

    def __init__(self):
        self.stashed = {}
        self.stash_readers = []
        self.accepted = {}
        self.backlog_fds = set()
        cdef int rc = aioc_ring_init(&self.ring, ring_sq_entries, ring_cq_entries)
        if rc < 0:
            raise_errno(-rc)
        rc = aioc_ring_provide_buffers(&self.ring, ring_buffers, READ_BUFFER_SIZE)
        if rc < 0:
            raise_errno(-rc)
        self.completions = <aioc_cqe *>PyMem_Malloc(self.ring.cq_entries * sizeof(aioc_cqe))
        if self.completions is NULL:
            raise MemoryError()

    def __dealloc__(self):
        self.drain_ops()
        if self.ring.fd >= 0:
            aioc_ring_exit(&self.ring)
        PyMem_Free(self.completions)
        PyMem_Free(self.generations)
        PyMem_Free(self.ops)

    @property
    def _overflows(self):
        """Passes that found the completion queue overflowed (kept by the kernel)."""
        return self.ring.overflows

    cdef int ensure(self, int fd) except -1:
        cdef int size
        cdef uint32_t *generations
        if fd < self.generations_fds:
            return 0
        cdef UringOp **ops
        size = max(fd + 1, self.generations_fds * 2, 64)
        generations = <uint32_t *>PyMem_Realloc(self.generations, 2 * size * sizeof(uint32_t))
        if generations is NULL:
            raise MemoryError()
        memset(&generations[2 * self.generations_fds], 0, 2 * (size - self.generations_fds) * sizeof(uint32_t))
        self.generations = generations
        ops = <UringOp **>PyMem_Realloc(self.ops, 2 * size * sizeof(UringOp *))
        if ops is NULL:
            raise MemoryError()
        memset(&ops[2 * self.generations_fds], 0, 2 * (size - self.generations_fds) * sizeof(UringOp *))
        self.ops = ops
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
        ref = owner_ref(owner)
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
        self.cancel_bits(loop, fd, mask)
        if fd < self.generations_fds:
            if mask & READABLE and self.ops[2 * fd + KIND_READ] is not NULL:
                self.mark_idle(self.ops[2 * fd + KIND_READ])  # its data stays for the next reader
            if mask & WRITABLE:
                self.cancel_op(fd, KIND_WRITE, False)
        return 0

    cdef int cancel_op(self, int fd, int direction, bint detach) except -1:
        """Cancel ``fd``'s recv (or send), whose waiter left; with ``detach``
        its result is dropped (the socket is going), else a recv's is kept."""
        cdef UringOp *op = self.ops[2 * fd + direction]
        if op is NULL or self.ring.fd < 0:
            return 0
        if detach:
            op.detached = True
            self.ops[2 * fd + direction] = NULL
        if not op.orphaned:
            op.orphaned = True
            while aioc_ring_cancel(&self.ring, <uint64_t><size_t>op, poll_tag(fd, KIND_IGNORED, 0)) == -EBUSY:
                self.submit_now()
        return 0

    cdef int forget(self, EventLoop loop, int fd) except -1:
        # The socket is closed right after: submit the removals now, so that
        # closing it really closes the file (and the peer sees it at once).
        cdef int rc
        self.cancel_bits(loop, fd, READABLE | WRITABLE)
        if fd < self.generations_fds:
            self.cancel_op(fd, KIND_READ, True)
            self.cancel_op(fd, KIND_WRITE, True)
            self.stashed.pop(fd, None)
            if self.accepted:
                self.drop_accepted(fd)
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
        cdef bint may_block = timeout > 0.0 and not self.stash_readers
        cdef long long ns
        cdef aioc_cqe *cqe
        if self.backlog_at == self.backlog_end:
            if self.idle_ops is not NULL or self.backlog_fds:
                self.check_idle(loop)
            self.backlog_at = self.backlog_end = 0
            if not may_block or aioc_ring_work_pending(&self.ring):
                # Requests to submit (they often complete as they are
                # submitted) or completions the kernel has yet to post: an
                # enter that does not wait, keeping the GIL, may be all
                # this pass needs.
                self.entered(aioc_ring_enter(&self.ring, 0, 0))
                self.backlog_end = aioc_ring_reap(&self.ring, self.completions, self.ring.cq_entries, &overflowed)
            if may_block and self.backlog_end == 0:
                ns = <long long>ceil(timeout * 1e9)
                with nogil:
                    rc = aioc_ring_enter(&self.ring, 1, ns)
                self.entered(rc)
                self.backlog_end = aioc_ring_reap(&self.ring, self.completions, self.ring.cq_entries, &overflowed)
            # With overflowed, the kernel holds more: the next enter moves
            # them into the CQ, and finds them there without waiting.
        while self.backlog_at < self.backlog_end:
            cqe = &self.completions[self.backlog_at]
            self.backlog_at += 1  # first: an exception below must not replay it
            self.complete(loop, cqe, may_block)
        if self.stash_readers:
            fds, self.stash_readers = self.stash_readers, []
            for fd in fds:
                self.deliver_stash(loop, fd)
        return 0

    cdef int entered(self, int rc) except -1:
        """Check what io_uring_enter returned."""
        if rc == -EEXIST:
            raise RuntimeError(IO_URING_OTHER_THREAD)
        if rc == -EINTR:
            PyErr_CheckSignals()  # runs Python signal handlers
        elif rc < 0 and rc != -ETIME and rc != -EBUSY and rc != -EAGAIN:
            # EBUSY/EAGAIN: completions must be reaped before more is taken.
            raise_errno(-rc)
        return 0

    cdef int complete(self, EventLoop loop, aioc_cqe *cqe, bint may_block) except -1:
        cdef int fd = <int><uint32_t>cqe.user_data
        cdef int kind = <int>((cqe.user_data >> 32) & 3)
        cdef UringOp *op
        if not cqe.user_data & POLL_TAG:
            op = <UringOp *><size_t>cqe.user_data
            if op.kind == KIND_RECV:
                return self.recv_done(loop, op, cqe.res, cqe.flags)
            if op.kind == KIND_ACCEPT:
                return self.accept_done(loop, op, cqe.res, cqe.flags)
            return self.send_done(loop, op, cqe.res)
        cdef uint32_t generation = <uint32_t>((cqe.user_data >> 34) & GENERATION_MASK)
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
        if mask & FAULT:
            mask = self.sparing_ops(fd, mask)
        if mask:
            loop.dispatch_io(fd, mask, may_block)
        return 0

    cdef inline uint32_t sparing_ops(self, int fd, uint32_t fault) noexcept:
        """Whom a fault on ``fd`` wakes: not a waiter whose recv, send or
        accept the kernel is still doing.  Woken, that waiter would do its I/O
        again beside the kernel's (a send twice, say); the op's own
        completion brings it the error."""
        cdef uint32_t spared = 0
        cdef UringOp *op = self.ops[2 * fd + KIND_READ]
        if op is not NULL and not op.orphaned:
            spared |= READABLE
        op = self.ops[2 * fd + KIND_WRITE]
        if op is not NULL and not op.orphaned:
            spared |= WRITABLE
        return (READABLE | WRITABLE) & ~spared if spared else fault

    cdef int close(self) except -1:
        self.drain_ops()
        if self.ring.fd >= 0:
            aioc_ring_exit(&self.ring)
        self.stashed.clear()
        for fd in list(self.accepted):
            self.drop_accepted(fd)
        return 0

    cdef int op_waited(self, EventLoop loop, UringOp *op) except -1:
        """Whether ``op``'s fd has a waiter of the kind the op completes for, on its socket."""
        cdef FdSlot *slot
        if op.detached or op.fd >= loop.fds.size:
            return False
        slot = &loop.fds.slots[op.fd]
        if slot.reader_task is NULL or slot.reader_owner != op.owner:
            return False
        return type(<object>slot.reader_event) is (ReadEvent if op.kind == KIND_RECV else AcceptEvent)

    cdef int mark_idle(self, UringOp *op) except -1:
        """List ``op`` to be looked at before the next enter: its waiter left."""
        if not op.idle_listed:
            op.idle_listed = True
            op.idle_prev = NULL
            op.idle_next = self.idle_ops
            if op.idle_next is not NULL:
                op.idle_next.idle_prev = op
            self.idle_ops = op
        return 0

    cdef void unlink_idle(self, UringOp *op) noexcept:
        if not op.idle_listed:
            return
        op.idle_listed = False
        if op.idle_prev is NULL:
            self.idle_ops = op.idle_next
        else:
            op.idle_prev.idle_next = op.idle_next
        if op.idle_next is not NULL:
            op.idle_next.idle_prev = op.idle_prev

    cdef int check_idle(self, EventLoop loop) except -1:
        """Before the enter: cancel the accepts whose listener was closed, or
        that stayed without a waiter for IDLE_PASSES passes; close the
        connections queued for a listener that was closed."""
        cdef UringOp *op = self.idle_ops
        cdef UringOp *following
        cdef int fd
        while op is not NULL:
            following = op.idle_next
            fd = op.fd
            if op.detached or op.orphaned or self.ops[2 * fd + KIND_READ] != op:
                self.unlink_idle(op)  # being cancelled, or replaced
            elif self.op_waited(loop, op):
                op.idle_passes = 0
                self.unlink_idle(op)
            elif aioc_socket_fd(<object>op.owner) != fd:  # closed directly: its file must go now
                self.unlink_idle(op)
                self.cancel_op(fd, KIND_READ, True)
            elif op.idle_passes >= IDLE_PASSES:
                self.unlink_idle(op)
                self.cancel_op(fd, KIND_READ, False)
            else:
                op.idle_passes += 1
            op = following
        if self.backlog_fds:
            for fd in list(self.backlog_fds):
                entry = self.accepted.get(fd)
                listener = entry[0]() if entry is not None and entry[0] is not None else None
                if listener is None or aioc_socket_fd(listener) != fd:  # gone, or closed directly
                    self.drop_accepted(fd)
        return 0

    # -- completion I/O: recv and send done by the kernel -----------------------

    cdef UringOp *new_op(self, int kind, int fd, object owner) except NULL:
        cdef UringOp *op = <UringOp *>PyMem_Malloc(sizeof(UringOp))
        if op is NULL:
            raise MemoryError()
        memset(op, 0, sizeof(UringOp))
        op.kind = kind
        op.fd = fd
        Py_INCREF(owner)
        op.owner = <PyObject *>owner
        op.next = self.live_ops
        if op.next is not NULL:
            op.next.prev = op
        self.live_ops = op
        return op

    cdef void free_op(self, UringOp *op) noexcept:
        # Unlinked first: a finalizer run by a drop below must find the list whole.
        self.unlink_idle(op)
        if op.prev is NULL:
            self.live_ops = op.next
        else:
            op.prev.next = op.next
        if op.next is not NULL:
            op.next.prev = op.prev
        if op.viewed:
            PyBuffer_Release(&op.view)
        Py_XDECREF(op.data)
        Py_XDECREF(op.event)
        Py_XDECREF(op.owner)
        PyMem_Free(op)

    cdef int submit_op(self, UringOp *op) except -1:
        cdef const char *data
        cdef Py_ssize_t size
        if op.kind == KIND_RECV:
            while aioc_ring_recv(&self.ring, op.fd, <unsigned>op.size, <uint64_t><size_t>op) == -EBUSY:
                self.submit_now()
            return 0
        if op.kind == KIND_ACCEPT:
            op.address_length = sizeof(op.address)
            while aioc_ring_accept_multishot(&self.ring, op.fd, op.address, &op.address_length,
                                             <uint64_t><size_t>op) == -EBUSY:
                self.submit_now()
            return 0
        # The op's own data and offset: fields of the event that Python code
        # reassigns meanwhile never point the kernel at other memory.
        data = <const char *>op.view.buf if op.viewed else PyBytes_AS_STRING(<object>op.data)
        size = min(op.size - op.offset, <Py_ssize_t>MAX_SEND)
        while aioc_ring_send(&self.ring, op.fd, data + op.offset, <unsigned>size, <uint64_t><size_t>op) == -EBUSY:
            self.submit_now()
        return 0

    cdef int start_recv(self, int fd, object sock, Py_ssize_t size) except -1:
        """Receive ``size`` bytes at most, once, for ``sock``'s reader."""
        cdef UringOp *op = self.new_op(KIND_RECV, fd, sock)
        op.size = min(size, <Py_ssize_t>READ_BUFFER_SIZE)  # at most the provided buffers' size
        try:
            self.submit_op(op)
        except BaseException:
            self.free_op(op)
            raise
        self.ops[2 * fd + KIND_READ] = op
        return 0

    cdef int start_send(self, EventLoop loop, SendAll event, Task task, int fd) except -1:
        """Wait in ``fd``'s writer place while the kernel sends the rest of ``event``'s data."""
        cdef UringOp *op
        loop.claim_io(fd, True)
        self.ensure(fd)
        op = self.new_op(KIND_SEND, fd, event.sock)
        Py_INCREF(event)
        op.event = <PyObject *>event
        data = event._data
        Py_INCREF(data)  # the kernel reads it until the completion
        op.data = <PyObject *>data
        op.offset = event._sent  # send_all checked it: 0 <= sent < size
        try:
            if type(data) is bytes:
                op.size = PyBytes_GET_SIZE(data)
            else:
                PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
                op.viewed = True
                op.size = op.view.len
            self.submit_op(op)
        except BaseException:
            self.free_op(op)
            raise
        self.ops[2 * fd + KIND_WRITE] = op
        return loop.enlist_io(fd, True, event, task, event.sock)

    cdef int recv_done(self, EventLoop loop, UringOp *op, int res, uint32_t flags) except -1:
        """The completion of ``op``: bytes, EOF or an error for its reader or
        else queued."""
        cdef int fd = op.fd
        cdef bint waited
        cdef char *buffer = NULL
        if flags & AIOC_CQE_BUFFER:
            buffer = aioc_ring_buffer(&self.ring, flags >> 16)
        elif res > 0:
            res = -ENOBUFS  # never: data comes in a provided buffer
        if not op.detached and self.ops[2 * fd + KIND_READ] == op:
            self.ops[2 * fd + KIND_READ] = NULL
        try:
            if op.detached:
                return 0  # its socket was forgotten: what came for it goes too
            waited = self.op_waited(loop, op)
            if res != -ECANCELED and res != -ENOBUFS:  # those only end it
                waited = self.recv_deliver(loop, op, buffer, res, waited)
            if waited:
                # Ended with a reader still there: cancelled as it came back,
                # or out of buffers (they are back by the next enter).
                if self.ops[2 * fd + KIND_READ] is NULL and not self.has_stash(fd, <object>op.owner):
                    self.start_recv(fd, <object>op.owner, (<ReadEvent>loop.fds.slots[fd].reader_event)._nbytes)
            return 0
        finally:
            if buffer is not NULL:  # copied out: the kernel may fill it again
                aioc_ring_return_buffer(&self.ring, flags >> 16)
            self.free_op(op)

    cdef bint recv_deliver(self, EventLoop loop, UringOp *op, char *buffer, int res, bint waited) except -1:
        """Hand ``res`` (a count of bytes in ``buffer``, 0 for EOF, or -errno)
        to ``op``'s reader, if ``waited``, behind any bytes queued before;
        else queue it.  Whether the reader still waits."""
        cdef int fd = op.fd
        cdef object sock = <object>op.owner
        cdef Py_ssize_t nbytes
        cdef Task task
        if waited and not (self.stashed and self.has_stash(fd, sock)):
            nbytes = (<ReadEvent>loop.fds.slots[fd].reader_event)._nbytes
            task = loop.take_io_waiter(fd, False)
            if res < 0:
                loop.schedule_throw(task, os_error(-res))
                return False
            if res > nbytes:  # a chunk larger than this read: the rest waits for the next
                self.stash(fd, sock, PyBytes_FromStringAndSize(buffer + nbytes, res - nbytes), 0)
                res = <int>nbytes
            loop.push(task, PyBytes_FromStringAndSize(buffer, res))
            return False
        if res == 0:
            return waited  # EOF, behind the queued bytes: a recv after them finds it again
        if res > 0:
            self.stash(fd, sock, PyBytes_FromStringAndSize(buffer, res), 0)
        else:
            self.stash(fd, sock, b"", -res)
        return waited

    cdef int send_done(self, EventLoop loop, UringOp *op, int res) except -1:
        cdef int fd = op.fd
        cdef FdSlot *slot
        cdef SendAll event = <SendAll>op.event
        cdef Task task
        if res > 0:
            op.offset += res
            if event._sent <= PY_SSIZE_T_MAX - res:  # Python code may have set it to anything
                event._sent += res
        slot = &loop.fds.slots[fd]
        waited = (not op.orphaned and not op.detached and slot.writer_event == op.event)
        if waited and (res >= 0 or res == -ECANCELED) and op.offset < op.size:
            return self.submit_op(op)  # a short send: the rest, with the same op
        if not op.detached and self.ops[2 * fd + KIND_WRITE] == op:
            self.ops[2 * fd + KIND_WRITE] = NULL
        try:
            if not waited:
                return 0
            task = loop.take_io_waiter(fd, True)
            if res < 0 and res != -ECANCELED:
                return loop.schedule_throw(task, os_error(-res))
            return loop.push(task, event._sent)
        finally:
            self.free_op(op)

    cdef int start_accept(self, int fd, object listener) except -1:
        cdef UringOp *op = self.new_op(KIND_ACCEPT, fd, listener)
        try:
            self.submit_op(op)
        except BaseException:
            self.free_op(op)
            raise
        self.ops[2 * fd + KIND_READ] = op
        return 0

    cdef int accept_done(self, EventLoop loop, UringOp *op, int res, uint32_t flags) except -1:
        """One completion of ``op``, a multishot accept: a connection (or an
        error) for its acceptor or else queued; without IORING_CQE_F_MORE, its last."""
        cdef int fd = op.fd
        cdef bint more = (flags & AIOC_CQE_MORE) != 0
        if not more and not op.detached and self.ops[2 * fd + KIND_READ] == op:
            self.ops[2 * fd + KIND_READ] = NULL
        try:
            if op.detached:
                if res >= 0:  # accepted for a listener that is going: refused, not leaked
                    close_fd(res)
                return 0
            self.accept_deliver(loop, op, res)
            if self.op_waited(loop, op):
                # Ended with an acceptor still there: a cancel lost to its
                # coming back, or a connection aborted first.
                if not more and self.ops[2 * fd + KIND_READ] is NULL and fd not in self.accepted:
                    self.start_accept(fd, <object>op.owner)
            elif more:
                self.mark_idle(op)
            return 0
        finally:
            if not more:
                self.free_op(op)

    cdef int accept_deliver(self, EventLoop loop, UringOp *op, int res) except -1:
        """As accept_for after accept4() returned ``res``; a connection nobody
        waits for (or that would overtake queued ones) is queued."""
        cdef int fd = op.fd
        cdef Task task
        cdef object listener = <object>op.owner
        cdef bint waited = self.op_waited(loop, op)
        if res < 0:
            if not waited or res == -ECONNABORTED or res == -ECANCELED:
                return 0  # an error with nobody to tell meets the next acceptor again
            event = <object>loop.fds.slots[fd].reader_event
            task = loop.take_io_waiter(fd, False)
            if res in ACCEPT_BACKOFF_ERRNOS_NEGATED:
                accept_backoff(loop, event, task, listener, os_error(-res))
                return 0
            return loop.schedule_throw(task, os_error(-res))
        try:
            conn = accepted_socket(listener, res)
        except BaseException as exc:
            close_fd(res)
            if not waited:
                raise
            return loop.schedule_throw(loop.take_io_waiter(fd, False), exc)
        try:
            peer = self.accepted_peer(op, res, conn)
        except OSError:
            conn.close()  # gone before it was asked where from: as ECONNABORTED
            return 0
        except BaseException as exc:
            conn.close()
            if not waited:
                raise
            return loop.schedule_throw(loop.take_io_waiter(fd, False), exc)
        if waited and fd not in self.accepted:
            return loop.push(loop.take_io_waiter(fd, False), (conn, peer))
        entry = self.accepted.get(fd)
        if entry is None or entry[0] is None or entry[0]() is not listener:
            if entry is not None:
                self.drop_accepted(fd)  # left by a listener closed since
            entry = self.accepted[fd] = (owner_ref(listener), [])
            self.backlog_fds.add(fd)  # watched: closing the listener closes them
        entry[1].append((conn, peer))
        if len(entry[1]) >= ACCEPT_BACKLOG and self.ops[2 * fd + KIND_READ] == op:
            self.cancel_op(fd, KIND_READ, False)  # enough: the listen queue holds the rest
        return 0

    cdef object accepted_peer(self, UringOp *op, int conn_fd, object conn):
        """The peer of ``conn``: from the op's address unless a later accept of
        the same batch wrote over it."""
        cdef unsigned i
        for i in range(self.backlog_at, self.backlog_end):
            if self.completions[i].user_data == <uint64_t><size_t>op:
                return conn.getpeername()
        return aioc_inet_address(<sockaddr_storage *>op.address)

    cdef object take_accepted(self, int fd, object listener):
        """The first connection queued for ``listener``, or None."""
        entry = self.accepted.get(fd)
        if entry is None:
            return None
        if entry[0] is None or entry[0]() is not listener:
            self.drop_accepted(fd)  # another listener's, that had this number
            return None
        queued = entry[1]
        accepted = queued.pop(0)
        if not queued:
            del self.accepted[fd]
            self.backlog_fds.discard(fd)
        return accepted

    cdef int drop_accepted(self, int fd) except -1:
        """Close the connections queued for ``fd``'s listener."""
        entry = self.accepted.pop(fd, None)
        self.backlog_fds.discard(fd)
        if entry is not None:
            for conn, _ in entry[1]:
                conn.close()
        return 0

    cdef int stash(self, int fd, object sock, object data, int error) except -1:
        """Queue ``data`` (then ``error``, if not 0) for ``sock``'s next reader."""
        entry = self.stashed.get(fd)
        if entry is None or entry[0]() is not sock:
            entry = self.stashed[fd] = [owner_ref(sock), data, error]
        else:
            entry[1] += data
            if error:
                entry[2] = error
        return 0

    cdef bint has_stash(self, int fd, object sock):
        entry = self.stashed.get(fd)
        return entry is not None and entry[0] is not None and entry[0]() is sock

    cdef int deliver_stash(self, EventLoop loop, int fd) except -1:
        """Hand ``fd``'s waiting reader its stashed bytes, with what the socket
        holds behind them: what one recv would return on epoll at this point;
        or the error stashed behind them."""
        cdef FdSlot *slot = &loop.fds.slots[fd]
        cdef ReadEvent event
        cdef Py_ssize_t room
        cdef ssize_t n
        cdef UringOp *op
        if slot.reader_task is NULL or type(<object>slot.reader_event) is not ReadEvent:
            return 0  # it left: the bytes stay for the next reader
        event = <ReadEvent>slot.reader_event
        if slot.reader_owner != <PyObject *>event.sock:
            return 0
        data = self.take_stash(fd, event.sock, event._nbytes)
        if data is None:  # gone with its socket: receive for this reader after all
            op = self.ops[2 * fd + KIND_READ]
            if op is not NULL and op.kind == KIND_RECV and op.owner == <PyObject *>event.sock:
                op.orphaned = False  # its next completion is this reader's
                return 0
            return self.start_recv(fd, event.sock, event._nbytes)
        if type(data) is not bytes:  # the error behind the bytes
            if self.ops[2 * fd + KIND_READ] is not NULL:
                self.mark_idle(self.ops[2 * fd + KIND_READ])
            return loop.schedule_throw(loop.take_io_waiter(fd, False), data)
        room = min(event._nbytes - len(data), <Py_ssize_t>READ_BUFFER_SIZE)
        if room > 0 and self.ops[2 * fd + KIND_READ] is NULL and not self.has_stash(fd, event.sock):
            n = recv(fd, loop.read_buffer, room, MSG_DONTWAIT)  # never ahead of a recv in flight
            if n > 0:
                data += PyBytes_FromStringAndSize(loop.read_buffer, n)
        if self.ops[2 * fd + KIND_READ] is not NULL:
            self.mark_idle(self.ops[2 * fd + KIND_READ])  # unless this task comes back to read
        return loop.push(loop.take_io_waiter(fd, False), data)

    cdef object take_stash(self, int fd, object sock, Py_ssize_t nbytes):
        """Up to ``nbytes`` that came for readers of ``sock``, else the error
        that came behind them (an OSError), or None."""
        entry = self.stashed.pop(fd, None)
        if entry is None or entry[0] is None or entry[0]() is not sock:
            return None  # none, or another socket's that had this number
        data = entry[1]
        if not data:
            return os_error(entry[2]) if entry[2] else None
        if len(data) > nbytes or entry[2]:
            self.stashed[fd] = [entry[0], data[nbytes:], entry[2]]
            data = data[:nbytes]
        return data

    cdef void drain_ops(self) noexcept:
        # The kernel writes into recv buffers and reads send data until each
        # op completes: cancel them all and wait for their completions before
        # anything is freed.  Ops still owned after CLOSE_WAIT_NS are leaked,
        # never freed under the kernel.
        cdef int overflowed = 0
        cdef unsigned n, i
        cdef double give_up
        cdef UringOp *op
        if self.live_ops is NULL or self.ring.fd < 0:
            return
        give_up = monotonic() + CLOSE_WAIT_NS * 1e-9
        if aioc_ring_cancel_all(&self.ring, poll_tag(0, KIND_IGNORED, 0)) < 0:
            aioc_ring_enter(&self.ring, 0, 0)
            if aioc_ring_cancel_all(&self.ring, poll_tag(0, KIND_IGNORED, 0)) < 0:
                self.live_ops = NULL
                return
        cdef int rc
        while self.live_ops is not NULL and monotonic() < give_up:
            with nogil:
                rc = aioc_ring_enter(&self.ring, 1, 10000000)
            if rc == -EEXIST:  # not the ring's thread: it cannot reap here
                break
            n = aioc_ring_reap(&self.ring, self.completions, self.ring.cq_entries, &overflowed)
            for i in range(n):
                if not self.completions[i].user_data & POLL_TAG and not self.completions[i].flags & AIOC_CQE_MORE:
                    op = <UringOp *><size_t>self.completions[i].user_data
                    if self.ops[2 * op.fd + (KIND_WRITE if op.kind == KIND_SEND else KIND_READ)] == op:
                        self.ops[2 * op.fd + (KIND_WRITE if op.kind == KIND_SEND else KIND_READ)] = NULL
                    self.free_op(op)
        self.live_ops = NULL  # what is left is leaked on purpose
        self.idle_ops = NULL


cdef int io_uring_errno = -1      # -1: not probed yet; 0: io_uring works


cdef int probe_io_uring() noexcept:
    """0 if io_uring can be used here, else the errno io_uring_setup failed with."""
    global io_uring_errno
    if io_uring_errno < 0:
        io_uring_errno = aioc_io_uring_error()
    return io_uring_errno


# -- the built-in events' completion I/O -------------------------------------------

ACCEPT_BACKOFF_ERRNOS_NEGATED = frozenset(-code for code in ACCEPT_BACKOFF_ERRNOS)


cdef int uring_accept(EventLoop loop, AcceptEvent event, Task task) except -1:
    """An AcceptEvent on an IPv4 or IPv6 listener on io_uring: the kernel accepts."""
    cdef object listener = event.sock
    cdef int fd = aioc_socket_fd(listener)
    cdef IoUringBackend ring = loop.uring
    cdef UringOp *op
    if fd < 0:
        return loop.yield_guarded(event, task)  # refuses the closed socket as usual
    try:
        ring.ensure(fd)
        loop.claim_io(fd, False)
        if ring.accepted:
            accepted = ring.take_accepted(fd, listener)
            if accepted is not None:  # queued earlier: at once, no system call
                if ring.ops[2 * fd + KIND_READ] is not NULL:
                    ring.mark_idle(ring.ops[2 * fd + KIND_READ])  # unless this task comes back
                return loop.push(task, accepted)
        op = ring.ops[2 * fd + KIND_READ]
        if op is not NULL and op.kind == KIND_ACCEPT and op.owner == <PyObject *>listener:
            op.orphaned = False  # an accept its last acceptor left: the connection is ours
        else:
            if op is not NULL:  # another socket's, that had this number: it holds that file
                ring.cancel_op(fd, KIND_READ, True)
            ring.start_accept(fd, listener)
        return loop.enlist_io(fd, False, event, task, listener)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        loop.unwait(task)
        return loop.schedule_throw(task, exc)


cdef inline bint uring_can_read(ReadEvent event) noexcept:
    return is_socket(event.sock)


cdef int uring_read(EventLoop loop, ReadEvent event, Task task) except -1:
    """A ReadEvent on io_uring: the kernel receives into a provided buffer.

    Whichever way a ReadEvent waits (yielded, or through its _yield under a
    Timeout), it comes here: bytes stashed for its socket must come first.
    """
    cdef object sock = event.sock
    cdef int fd = aioc_socket_fd(sock)
    cdef IoUringBackend ring = loop.uring
    cdef UringOp *op
    if fd < 0:
        return loop.yield_guarded(event, task)  # refuses the closed socket as usual
    try:
        ring.ensure(fd)
        if ring.stashed and ring.has_stash(fd, sock):
            # Delivered after the next enter, where epoll's loop would recv.
            loop.claim_io(fd, False)
            ring.stash_readers.append(fd)
            return loop.enlist_io(fd, False, event, task, sock)
        op = ring.ops[2 * fd + KIND_READ]
        adopt = op is not NULL and op.kind == KIND_RECV and op.owner == <PyObject *>sock
        if event._nbytes > READ_BUFFER_SIZE and not adopt:
            # No buffer that large per read: readiness, then recv.  (With a
            # cancelled reader's recv still armed, that recv: as a recv may
            # return less.)
            return loop.wait_io(fd, False, event, task, sock)
        loop.claim_io(fd, False)
        if adopt:
            op.orphaned = False  # armed for this socket's last reader: its data is ours
        else:
            if op is not NULL:  # another socket's, that had this number: it holds that file
                ring.cancel_op(fd, KIND_READ, True)
            ring.start_recv(fd, sock, event._nbytes)
        return loop.enlist_io(fd, False, event, task, sock)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        loop.unwait(task)
        return loop.schedule_throw(task, exc)
