# Queue, compiled: the twin of aioc.queues.Queue (FIFO), which remains the
# specification.  A put with room and a get with an item ready, when nobody
# waits on the other side, run in C and return a Completed; the items sit in
# a list used as a ring from `head` (compacted when the dead prefix is large),
# which the garbage collector sees as any list.  Waiting goes through the
# pure module's put_when_room, get_when_available and join_when_done.

cdef object put_when_room = _queues.put_when_room
cdef object get_when_available = _queues.get_when_available
cdef object join_when_done = _queues.join_when_done
cdef object QueueEmpty = _queues.QueueEmpty
cdef object QueueFull = _queues.QueueFull

# Compact the item list once this many taken slots lead it, and they are
# at least half of it: each compaction moves at most as many items as
# were taken since the last one.
cdef Py_ssize_t QUEUE_COMPACT_MIN = 64


@cython.final
cdef class Queue:
    """A FIFO queue of at most ``maxsize`` items (unbounded if ``maxsize <= 0``).

    ``put`` waits while the queue is full, ``get`` while it is empty;
    ``task_done`` and ``join`` let a producer wait until every item put has
    been processed.
    """

    __class_getitem__ = classmethod(types.GenericAlias)

    def __cinit__(self, maxsize=0):
        self._maxsize = maxsize
        self.items = []
        self.head = 0
        # Getters wait only while the queue is empty: put hands its item
        # straight to the first of them.
        self._getters = deque()
        self._putters = deque()
        # Room granted to woken putters that have not put yet: it counts as
        # taken, so that nobody else fills it in the meantime.
        self._reserved = 0
        self._unfinished = 0
        self._joiners = deque()

    # -- storage ----------------------------------------------------------------

    cdef inline Py_ssize_t count(self) noexcept:
        return PyList_GET_SIZE(self.items) - self.head

    cdef inline int push(self, object item) except -1:
        self.items.append(item)
        return 0

    cdef inline object pop(self):
        cdef list items = self.items
        cdef Py_ssize_t head = self.head
        item = items[head]
        items[head] = None
        head += 1
        if head == PyList_GET_SIZE(items):
            del items[:]
            head = 0
        elif head >= QUEUE_COMPACT_MIN and 2 * head >= PyList_GET_SIZE(items):
            del items[:head]
            head = 0
        self.head = head
        return item

    def _put_back(self, item):
        """Return an item a cancelled getter was handed, where ``get`` takes it next."""
        if self.head > 0:
            self.head -= 1
            self.items[self.head] = item
        else:
            self.items.insert(0, item)

    # -- state ----------------------------------------------------------------

    @property
    def maxsize(self):
        return self._maxsize

    def qsize(self):
        return self.count()

    def empty(self):
        return self.count() == 0

    def full(self):
        return self.is_full()

    cdef inline bint is_full(self) noexcept:
        return 0 < self._maxsize <= self.count() + self._reserved

    # -- putting ----------------------------------------------------------------

    def put_nowait(self, item):
        """Put ``item`` at once; QueueFull if there is no room."""
        if self.is_full():
            raise QueueFull
        self.deliver(item)

    def put(self, item):
        """Put ``item``, waiting while the queue is full."""
        if not self.is_full():
            self.deliver(item)
            return COMPLETED_NONE
        return put_when_room(self, item)

    def _put_in_reserved_room(self, item):
        # A putter woken with room reserved for it puts now.
        self._reserved -= 1
        self.deliver(item)

    cdef inline int deliver(self, object item) except -1:
        self._unfinished += 1
        if not self._getters or not grant_first(self._getters, item):
            self.push(item)
        return 0

    def _pass_room_on(self, _):
        # A woken putter was cancelled before it ran: its room goes to the next.
        self._reserved -= 1
        self.wake_putters()

    cdef int wake_putters(self) except -1:
        putters = self._putters
        while putters and not self.is_full():
            self._reserved += 1
            if not grant_first(putters):
                self._reserved -= 1
        return 0

    # -- getting ------------------------------------------------------------------

    def get_nowait(self):
        """Take an item at once; QueueEmpty if there is none."""
        if self.count() == 0:
            raise QueueEmpty
        return self.take()

    def get(self):
        """Take an item, waiting while the queue is empty."""
        if self.count() == 0:
            return get_when_available(self)
        return completed(self.take())

    cdef inline object take(self):
        # The oldest item; its room goes to a waiting putter.
        item = self.pop()
        if self._putters:
            self.wake_putters()
        return item

    def _give_item_back(self, item):
        # A getter handed ``item`` was cancelled before it ran: the next
        # getter gets it, else it goes back where get takes from first.
        if not self._getters or not grant_first(self._getters, item):
            self._put_back(item)

    # -- joining ------------------------------------------------------------------

    def task_done(self):
        """Say one item taken by ``get`` has been processed; ValueError if none is left."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            while self._joiners and grant_first(self._joiners):
                pass

    def join(self):
        """Wait until every item put has been marked done by ``task_done``."""
        if self._unfinished == 0:
            return COMPLETED_NONE
        return join_when_done(self)

    def __repr__(self):
        return (f"<{type(self).__name__} maxsize={self._maxsize} qsize={self.count()} "
                f"getters={len(self._getters)} putters={len(self._putters)}>")
