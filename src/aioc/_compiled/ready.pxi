# The ready queue: a ring of (task, value) pairs in C, owned by the loop.

cdef enum:
    RING_INITIAL = 256             # pairs; grows by doubling


cdef int ring_init(Ring *ring) except -1:
    ring.items = <PyObject **>PyMem_Malloc(2 * RING_INITIAL * sizeof(PyObject *))
    if ring.items is NULL:
        raise MemoryError()
    ring.capacity = RING_INITIAL
    ring.head = ring.count = 0
    return 0


cdef int ring_grow(Ring *ring) except -1:
    # Only when full: the pairs from head to the end, then those before head.
    cdef Py_ssize_t capacity = ring.capacity * 2
    cdef Py_ssize_t tail = ring.capacity - ring.head
    cdef PyObject **items = <PyObject **>PyMem_Malloc(2 * capacity * sizeof(PyObject *))
    if items is NULL:
        raise MemoryError()
    memcpy(items, ring.items + 2 * ring.head, 2 * tail * sizeof(PyObject *))
    memcpy(items + 2 * tail, ring.items, 2 * ring.head * sizeof(PyObject *))
    PyMem_Free(ring.items)
    ring.items = items
    ring.capacity = capacity
    ring.head = 0
    return 0


cdef inline int ring_push(Ring *ring, object task, object value) except -1:
    cdef Py_ssize_t slot
    if ring.count == ring.capacity:
        ring_grow(ring)
    slot = ((ring.head + ring.count) & (ring.capacity - 1)) * 2
    Py_INCREF(task)
    Py_INCREF(value)
    ring.items[slot] = <PyObject *>task
    ring.items[slot + 1] = <PyObject *>value
    ring.count += 1
    return 0


cdef inline void ring_pop(Ring *ring, PyObject **task, PyObject **value) noexcept:
    # Hands the ring's references to the caller.
    cdef Py_ssize_t slot = ring.head * 2
    task[0] = ring.items[slot]
    value[0] = ring.items[slot + 1]
    ring.head = (ring.head + 1) & (ring.capacity - 1)
    ring.count -= 1


cdef void ring_clear(Ring *ring) noexcept:
    cdef PyObject *task
    cdef PyObject *value
    while ring.count:
        ring_pop(ring, &task, &value)
        Py_DECREF(<object>task)
        Py_DECREF(<object>value)


cdef void ring_free(Ring *ring) noexcept:
    if ring.items is not NULL:
        ring_clear(ring)
        PyMem_Free(ring.items)
        ring.items = NULL


cdef int ring_visit(Ring *ring, visitproc visit, void *arg) noexcept:
    cdef Py_ssize_t i, slot
    cdef int status
    for i in range(ring.count):
        slot = ((ring.head + i) & (ring.capacity - 1)) * 2
        status = visit(ring.items[slot], arg)
        if status == 0:
            status = visit(ring.items[slot + 1], arg)
        if status:
            return status
    return 0


@cython.final
@cython.freelist(4)
cdef class ReadyQueue:
    """``loop._ready``: ``append((task, value))`` and ``len()``, the tutorial's names."""

    def __cinit__(self, EventLoop loop not None):
        self.loop = loop

    def append(self, pair):
        task, value = pair
        self.loop.reschedule(task, value)

    def __len__(self):
        return self.loop.ready.count
