# The timer heap: a binary heap of TimerEntry nodes on (deadline, seq).
# Cancelled nodes stay until they reach the top, or until they outnumber the
# live ones and the heap is pruned.

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


cdef TimerEntry *timers_push(TimerHeap *heap, double deadline, Task task, object event) except NULL:
    cdef TimerEntry *entry
    cdef TimerEntry **entries
    cdef Py_ssize_t i, parent, capacity
    # NaN never compares due: it would sit on top of the heap forever.
    if deadline != deadline:
        raise ValueError("deadline must not be NaN")
    if heap.size == heap.capacity:
        capacity = max(64, heap.capacity * 2)
        entries = <TimerEntry **>PyMem_Realloc(heap.entries, capacity * sizeof(TimerEntry *))
        if entries is NULL:
            raise MemoryError()
        heap.entries = entries
        heap.capacity = capacity
    entry = <TimerEntry *>PyMem_Malloc(sizeof(TimerEntry))
    if entry is NULL:
        raise MemoryError()
    heap.seq += 1
    entry.deadline = deadline
    entry.seq = heap.seq
    Py_INCREF(task)
    entry.task = <PyObject *>task
    entry.event = NULL
    if event is not None:
        Py_INCREF(event)
        entry.event = <PyObject *>event
    i = heap.size
    heap.size += 1
    while i > 0:
        parent = (i - 1) >> 1
        if not timer_before(entry, heap.entries[parent]):
            break
        heap.entries[i] = heap.entries[parent]
        i = parent
    heap.entries[i] = entry
    return entry


cdef TimerEntry *timers_pop(TimerHeap *heap) noexcept:
    # The top node, now the caller's to free.
    cdef TimerEntry *entry = heap.entries[0]
    heap.size -= 1
    if heap.size:
        heap.entries[0] = heap.entries[heap.size]
        sift_down(heap.entries, heap.size, 0)
    return entry


cdef bint timers_cancel(TimerHeap *heap, TimerEntry *entry) noexcept:
    """Cancel lazily; True when cancelled nodes now call for a prune."""
    Py_XDECREF(entry.task)
    Py_XDECREF(entry.event)
    entry.task = entry.event = NULL
    heap.cancelled += 1
    return heap.cancelled > TIMER_PRUNE_MIN and heap.cancelled * 2 > heap.size


cdef void timers_prune(TimerHeap *heap) noexcept:
    cdef Py_ssize_t i, kept = 0
    for i in range(heap.size):
        if heap.entries[i].task is NULL:
            PyMem_Free(heap.entries[i])
        else:
            heap.entries[kept] = heap.entries[i]
            kept += 1
    heap.size = kept
    heap.cancelled = 0
    for i in range(kept // 2 - 1, -1, -1):
        sift_down(heap.entries, kept, i)


cdef void timers_clear(TimerHeap *heap) noexcept:
    # Tasks that outlive the heap must not keep pointers into it.
    cdef Py_ssize_t i
    cdef TimerEntry *entry
    cdef Task task
    for i in range(heap.size):
        entry = heap.entries[i]
        if entry.task is not NULL:
            task = <Task>entry.task
            if entry.event is NULL:
                task.deadline = NULL
            else:
                task.wait_timer = NULL
                task.wait_kind = WAIT_NONE
        Py_XDECREF(entry.task)
        Py_XDECREF(entry.event)
        PyMem_Free(entry)
    heap.size = 0
    heap.cancelled = 0


cdef int timers_visit(TimerHeap *heap, visitproc visit, void *arg) noexcept:
    cdef Py_ssize_t i
    cdef int status
    for i in range(heap.size):
        if heap.entries[i].task is not NULL:
            status = visit(heap.entries[i].task, arg)
            if status:
                return status
        if heap.entries[i].event is not NULL:
            status = visit(heap.entries[i].event, arg)
            if status:
                return status
    return 0
