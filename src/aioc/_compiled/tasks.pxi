# Task: a coroutine run by the loop, and the loop's list of live tasks.

# Set by EventLoop.new_task for the one Task it is about to create.
cdef bint creating_task = False


# No finalizer: a task that ends with an exception nobody has retrieved
# becomes a FailedTask below, the only tasks that pay for one.
cdef class Task:
    """A coroutine run by the loop (created by ``EventLoop.call_soon``)."""

    def __cinit__(self):
        # A task always has its loop (cancel() and every wait go through it):
        # only EventLoop.new_task may create one, and it sets the loop at once.
        global creating_task
        if not creating_task:
            raise TypeError(NO_TASK_CREATION)
        creating_task = False

    def __init__(self, *args):
        raise TypeError(NO_TASK_CREATION)

    @property
    def name(self):
        return self.task_name if self.task_name is not None else default_name(self.coro)

    @name.setter
    def name(self, name):
        self.task_name = check_name(name)

    def stack(self):
        """Where the task is suspended and what it waits on."""
        return TaskStack(coroutine_frames(self.coro), self.loop._waiting_on(self))

    def done(self):
        return self.finished

    def result(self):
        """The coroutine's return value; raises its exception instead if it had one."""
        if not self.finished:
            raise InvalidStateError(TASK_NOT_DONE)
        self.log_exception = False
        if self.error is not None:
            raise self.error
        return self.value

    def exception(self):
        if not self.finished:
            raise InvalidStateError(TASK_NOT_DONE)
        self.log_exception = False
        return self.error

    def cancel(self):
        """Throw :class:`Cancelled` into the task at its current yield.

        Returns False if the task has already finished.
        """
        if self.finished:
            return False
        self.loop.cancel_task(self)
        return True

    def cancelled(self):
        return self.finished and isinstance(self.error, Cancelled)

    def __repr__(self):
        state = "pending" if not self.finished else "cancelled" if self.cancelled() else "done"
        return f"<Task {self.name} {state}>"



# Same layout as Task: EventLoop.finish switches a task's type to this one
# when it ends with an exception to report, so that a task that succeeds is
# freed without a finalizer (about 5% of spawn-and-finish's instructions).
# Only plain tasks are recycled (aioc_install_task_free_list below): a
# recycled object keeps the GC header's "finalized" bit, and a FailedTask's
# report would not run again.
@cython.final
cdef class FailedTask(Task):
    """A task that ended with an exception; reported when collected unless retrieved."""

    def __del__(self):
        if self.log_exception:
            self.loop.call_exception_handler({"message": NEVER_RETRIEVED, "exception": self.error, "task": self})


# -- the garbage collector's view of a task ---------------------------------

# Only the fields that hold something: most stay None for a task's whole
# life, and the live-list links are borrowed (the loop visits its own
# references, live_visit below).  A burst of spawns keeps every new task in
# the young generations for a few collections, so this runs several times
# per task.
cdef int visit_task(PyObject *o, visitproc visit, void *arg) noexcept:
    # Casts only: a reference taken here would cost more than the visits.
    cdef int status = visit(<PyObject *>(<Task>o).coro, arg)
    if status == 0:
        status = visit(<PyObject *>(<Task>o).loop, arg)
    if status == 0 and (<Task>o).value is not None:
        status = visit(<PyObject *>(<Task>o).value, arg)
    if status == 0 and (<Task>o).error is not None:
        status = visit(<PyObject *>(<Task>o).error, arg)
    if status == 0 and (<Task>o).throw_next is not None:
        status = visit(<PyObject *>(<Task>o).throw_next, arg)
    if status == 0 and (<Task>o).join_target is not None:
        status = visit(<PyObject *>(<Task>o).join_target, arg)
    if status == 0 and (<Task>o).joiners is not None:
        status = visit(<PyObject *>(<Task>o).joiners, arg)
    if status == 0 and (<Task>o).task_name is not None:
        status = visit(<PyObject *>(<Task>o).task_name, arg)
    return status


aioc_set_traverse(Task, visit_task)
aioc_set_traverse(FailedTask, visit_task)
aioc_install_task_free_list(Task)


# -- the loop's list of live tasks --------------------------------------------

cdef inline void live_unlink(EventLoop loop, Task task) noexcept:
    # The caller drops the list's reference when it is done with the task.
    if task.prev_live is NULL:
        loop.live_head = task.next_live
    else:
        (<Task>task.prev_live).next_live = task.next_live
    if task.next_live is NULL:
        loop.live_tail = task.prev_live
    else:
        (<Task>task.next_live).prev_live = task.prev_live
    task.prev_live = task.next_live = NULL
    loop.live_count -= 1


cdef int live_visit(EventLoop loop, visitproc visit, void *arg) noexcept:
    cdef PyObject *task = loop.live_head
    cdef int status
    while task is not NULL:
        status = visit(task, arg)
        if status:
            return status
        task = (<Task>task).next_live
    return 0


cdef void live_clear(EventLoop loop) noexcept:
    # Drops the list's references without finishing the tasks: only for a
    # loop that is garbage or being freed.
    cdef PyObject *task
    while loop.live_head is not NULL:
        task = loop.live_head
        live_unlink(loop, <Task>task)
        Py_DECREF(<object>task)
