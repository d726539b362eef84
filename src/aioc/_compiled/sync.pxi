# Lock, compiled: the twin of aioc.sync.Lock, which remains the
# specification.  Taking a free lock and releasing one that nobody waits for
# run in C and return a Completed (no generator, no trip through the loop);
# waiting goes through the pure module's acquire_in_line and its Waiter
# records, so the rules of the waiting line are written once.

cdef object acquire_in_line = _sync.acquire_in_line
cdef object acquired = _sync.acquired
cdef object grant_first = _sync.grant_first


@cython.final
cdef class Lock:
    """A mutual-exclusion lock: ``async with lock:`` or ``yield from lock.acquire()``.

    Not reentrant; any task may release it.  Waiters acquire it in FIFO order.
    """

    def __cinit__(self):
        self._locked = False
        # While anyone waits the lock is held: release hands it straight on.
        self._waiters = deque()

    def locked(self):
        return self._locked

    def acquire(self):
        """Wait until the lock is free and take it; returns True."""
        if not self._locked:
            self._locked = True
            return completed(True)
        return acquire_in_line(self)

    def _try_take(self):
        if self._locked:
            return False
        self._locked = True
        return True

    def release(self):
        """Free the lock, or hand it to the first waiter.  RuntimeError if it is not held."""
        if not self._locked:
            raise RuntimeError("Lock.release() called on an unlocked lock")
        self.pass_on()

    def _pass_on(self, _):
        self.pass_on()

    cdef inline int pass_on(self) except -1:
        if not self._waiters or not grant_first(self._waiters, True):
            self._locked = False
        return 0

    def __aenter__(self):
        # None for the block, as acquired() returns: free on every CPython.
        if not self._locked:
            self._locked = True
            return COMPLETED_NONE
        return acquired(self)

    def __aexit__(self, *exc_info):
        self.release()
        return COMPLETED_NONE

    def __repr__(self):
        state = "locked" if self._locked else "unlocked"
        return f"<{type(self).__name__} {state}, {len(self._waiters)} waiting>"
