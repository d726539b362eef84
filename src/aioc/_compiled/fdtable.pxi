# The fd table: one FdSlot per file descriptor number, grown on demand.
# A slot holds the fd's reader and writer (event, task, owner) and, for
# epoll, the registration the kernel holds for it.

cdef int fds_ensure(FdTable *table, int fd) except -1:
    cdef int size
    cdef FdSlot *slots
    if fd < table.size:
        return 0
    size = max(fd + 1, table.size * 2, 64)
    slots = <FdSlot *>PyMem_Realloc(table.slots, size * sizeof(FdSlot))
    if slots is NULL:
        raise MemoryError()
    memset(&slots[table.size], 0, (size - table.size) * sizeof(FdSlot))
    table.slots = slots
    table.size = size
    return 0


cdef void fds_forget_registration(FdTable *table, int fd) noexcept:
    if fd < table.size:
        table.slots[fd].registered = 0
        Py_CLEAR(table.slots[fd].owner)


cdef inline bint registration_fits(FdSlot *slot, uint32_t mask, object owner) noexcept:
    """Whether the kernel already reports ``mask`` on this fd for ``owner``'s open file.

    The registration was made for a socket object, held weakly: the same
    live object still owns the same open file, while another object on the
    same fd number may be a new file that epoll has never seen.
    """
    return (slot.registered & mask == mask and slot.owner is not NULL and owner is not None
            and aioc_weakref_target(slot.owner) == <PyObject *>owner)


cdef object owner_ref(object owner):
    """A weak reference to a registration's owner, or None where the type
    takes none: ``weakref.ref(owner)`` without a Python call, as every new
    connection's first wait makes one."""
    if owner is None:
        return None
    try:
        return PyWeakref_NewRef(owner, None)
    except TypeError:  # the type takes no weak reference
        return None


cdef void fds_clear(FdTable *table) noexcept:
    # Tasks that outlive the table must not think they still wait in it.
    # Every pointer is taken out before any reference is dropped: a finalizer
    # run by a drop must find the table consistent.
    cdef int fd, i
    cdef FdSlot *slot
    cdef PyObject *held[7]
    for fd in range(table.size):
        slot = &table.slots[fd]
        if slot.reader_task is not NULL:
            (<Task>slot.reader_task).wait_kind = WAIT_NONE
        if slot.writer_task is not NULL:
            (<Task>slot.writer_task).wait_kind = WAIT_NONE
        held[0], held[1], held[2] = slot.reader_event, slot.reader_task, slot.reader_owner
        held[3], held[4], held[5] = slot.writer_event, slot.writer_task, slot.writer_owner
        held[6] = slot.owner
        slot.reader_event = slot.reader_task = slot.reader_owner = NULL
        slot.writer_event = slot.writer_task = slot.writer_owner = NULL
        slot.owner = NULL
        slot.registered = 0
        for i in range(7):
            Py_XDECREF(held[i])


cdef int fds_visit(FdTable *table, visitproc visit, void *arg) noexcept:
    cdef int fd, i, status
    cdef FdSlot *slot
    cdef PyObject *held[7]
    for fd in range(table.size):
        slot = &table.slots[fd]
        held[0], held[1], held[2] = slot.reader_event, slot.reader_task, slot.reader_owner
        held[3], held[4], held[5] = slot.writer_event, slot.writer_task, slot.writer_owner
        held[6] = slot.owner
        for i in range(7):
            if held[i] is not NULL:
                status = visit(held[i], arg)
                if status:
                    return status
    return 0
