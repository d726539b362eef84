# Completed: what a compiled primitive (sync.pxi, queues.pxi) returns when
# the operation completed at once.  `yield from` and `await` on it return its
# value without a trip through the loop and without a generator frame; its
# slots are C (aioc_make_completed in aioc.h).
#
# Why two shapes: CPython 3.10 and 3.11 finish a `yield from` through
# am_send, which returns any value without an exception.  From 3.12 the
# interpreter calls tp_iternext instead, where only None comes free; any
# other value would need a StopIteration, which costs more than a plain
# generator (which 3.12 resumes inline), so there a value comes back through
# aioc.sync.returning.

cdef extern from *:
    """
    #define AIOC_SEND_RETURNS_VALUES (PY_VERSION_HEX < 0x030C0000)
    """
    const bint AIOC_SEND_RETURNS_VALUES


@cython.final
@cython.freelist(64)
cdef class Completed:
    """An operation that completed at once: awaiting it returns ``value``."""

    def __repr__(self):
        return f"<Completed {self.value!r}>"


aioc_make_completed(Completed)

cdef Completed COMPLETED_NONE = Completed.__new__(Completed)
COMPLETED_NONE.value = None
cdef Completed COMPLETED_TRUE = Completed.__new__(Completed)
COMPLETED_TRUE.value = True
cdef object returning = _sync.returning


cdef inline object completed(object value):
    cdef Completed done
    if value is None:
        return COMPLETED_NONE
    if not AIOC_SEND_RETURNS_VALUES:
        return returning(value)
    if value is True:
        return COMPLETED_TRUE
    done = Completed.__new__(Completed)
    done.value = value
    return done
