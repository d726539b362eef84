/* C that Cython cannot express, for the compiled loop (_loop_c.pyx).

   Everything here is static: the header is included once, by _loop_c.c. */
#ifndef AIOC_H
#define AIOC_H

#include <Python.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

/* -- sockets ------------------------------------------------------------ */

/* A socket object starts with its fd, family, type and protocol, right after
   the object header: the layout CPython's socket module has always had.
   Checked at import (_check_socket_layout). */
typedef struct { PyObject_HEAD int sock_fd; int sock_family; int sock_type; int sock_proto; } aioc_socket_head;
#define aioc_socket_fd(o) (((aioc_socket_head *)(o))->sock_fd)
#define aioc_socket_family(o) (((aioc_socket_head *)(o))->sock_family)
#define aioc_socket_type(o) (((aioc_socket_head *)(o))->sock_type)
#define aioc_socket_proto(o) (((aioc_socket_head *)(o))->sock_proto)
#define aioc_weakref_target(ref) PyWeakref_GET_OBJECT(ref)

/* The (host, port) or (host, port, flowinfo, scope_id) that accept() and
   recvfrom() return, as the socket module builds it, with IPv4 hosts
   formatted here: glibc's inet_ntop goes through printf. */
static PyObject *aioc_inet_address(const struct sockaddr_storage *address) {
    char host[INET6_ADDRSTRLEN];
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        const unsigned char *b = (const unsigned char *)&in->sin_addr;
        char *p = host;
        int i;
        for (i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100) *p++ = (char)('0' + v / 100);
            if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            if (i < 3) *p++ = '.';
        }
        /* Built directly: Py_BuildValue would parse its format on every accept. */
        PyObject *text = PyUnicode_DecodeASCII(host, (Py_ssize_t)(p - host), NULL);
        PyObject *port = text == NULL ? NULL : PyLong_FromLong(ntohs(in->sin_port));
        PyObject *pair = port == NULL ? NULL : PyTuple_New(2);
        if (pair == NULL) {
            Py_XDECREF(text);
            Py_XDECREF(port);
            return NULL;
        }
        PyTuple_SET_ITEM(pair, 0, text);
        PyTuple_SET_ITEM(pair, 1, port);
        return pair;
    }
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo), (unsigned int)in6->sin6_scope_id);
    }
    PyErr_SetString(PyExc_ValueError, "not an internet address");
    return NULL;
}

/* An exact int in [low, high] into *out; 0 (no error set) for anything else. */
static int aioc_exact_int_in(PyObject *o, unsigned long low, unsigned long high, unsigned long *out) {
    unsigned long value;
    if (!PyLong_CheckExact(o)) return 0;
    value = PyLong_AsUnsignedLong(o);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();  /* negative or too large: the socket module says so */
        return 0;
    }
    if (value < low || value > high) return 0;
    *out = value;
    return 1;
}

/* The sockaddr that sendto() takes for a (host, port[, flowinfo[, scope_id]])
   tuple with a numeric host, as the socket module builds it.  1 when built;
   0, with no error set, when the socket module must do it instead: a host
   name to resolve, a scoped IPv6 host, anything it would refuse (its own
   error then applies). */
static int aioc_inet_sockaddr(PyObject *address, int family, struct sockaddr_storage *out, socklen_t *length) {
    Py_ssize_t items, size;
    unsigned long port, flowinfo = 0, scope_id = 0;
    const char *host;
    if (!PyTuple_CheckExact(address)) return 0;
    items = PyTuple_GET_SIZE(address);
    if (items < 2 || items > (family == AF_INET6 ? 4 : 2)) return 0;
    if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(address, 0))) return 0;
    host = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(address, 0), &size);
    if (host == NULL) {
        PyErr_Clear();
        return 0;
    }
    if ((size_t)size != strlen(host)) return 0;  /* an embedded NUL */
    if (!aioc_exact_int_in(PyTuple_GET_ITEM(address, 1), 0, 65535, &port)) return 0;
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) return 0;
        in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)port);
        *length = sizeof(*in);
        return 1;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        if (items > 2 && !aioc_exact_int_in(PyTuple_GET_ITEM(address, 2), 0, 0xfffff, &flowinfo)) return 0;
        if (items > 3 && !aioc_exact_int_in(PyTuple_GET_ITEM(address, 3), 0, 0xffffffffUL, &scope_id)) return 0;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) return 0;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)port);
        in6->sin6_flowinfo = htonl((uint32_t)flowinfo);
        in6->sin6_scope_id = (uint32_t)scope_id;
        *length = sizeof(*in6);
        return 1;
    }
    return 0;
}

/* An exact int in 1..PY_SSIZE_T_MAX as a C size; 0 for anything else, with
   no error set, so that the caller's Python check raises the precise one. */
static Py_ssize_t aioc_positive_size(PyObject *o) {
    Py_ssize_t size;
    if (!PyLong_CheckExact(o)) return 0;
    size = PyLong_AsSsize_t(o);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return size > 0 ? size : 0;
}

/* -- events as their own awaitable iterators ---------------------------- */

/* A compiled event is its own awaitable iterator, so that `yield from event`
   and `await event` allocate nothing: the first send yields the event, the
   next returns the value the loop resumed the task with.  Every compiled
   event type declares `suspended` as its first field.

   The flag is per event, so while one task is suspended on an event, another
   task that awaits the same event gets an iterator of its own (the pure
   Event.__await__ generator) instead of the shared flag. */
typedef struct { PyObject_HEAD int suspended; } aioc_event_head;
#define aioc_event_suspended(o) (((aioc_event_head *)(o))->suspended)

static PyObject *aioc_raise_thrown = NULL;   /* raises what gen.throw() passes on */
static PyObject *aioc_await_shared = NULL;   /* Event.__await__: one generator per await */

static PySendResult aioc_event_send(PyObject *self, PyObject *arg, PyObject **result) {
    aioc_event_head *event = (aioc_event_head *)self;
    event->suspended = !event->suspended;
    *result = event->suspended ? self : arg;
    Py_INCREF(*result);
    return event->suspended ? PYGEN_NEXT : PYGEN_RETURN;
}

static PyObject *aioc_event_next(PyObject *self) {
    PyObject *result;
    if (aioc_event_send(self, Py_None, &result) == PYGEN_NEXT) return result;
    Py_DECREF(result);
    return NULL;  /* exhausted: StopIteration without an object */
}

static PyObject *aioc_event_iter(PyObject *self) {
    if (aioc_event_suspended(self)) return PyObject_CallOneArg(aioc_await_shared, self);
    Py_INCREF(self);
    return self;
}

/* gen.throw() and gen.close() pass on to the iterator a coroutine is
   suspended in: the event forgets the suspension, then raises. */
static PyObject *aioc_event_throw(PyObject *self, PyObject *args) {
    aioc_event_suspended(self) = 0;
    return PyObject_Call(aioc_raise_thrown, args, NULL);
}

static PyObject *aioc_event_close(PyObject *self, PyObject *unused) {
    aioc_event_suspended(self) = 0;
    Py_RETURN_NONE;
}

static PyObject *aioc_event_iter_method(PyObject *self, PyObject *unused) {
    return aioc_event_iter(self);
}

static PyObject *aioc_event_next_method(PyObject *self, PyObject *unused) {
    PyObject *result = aioc_event_next(self);
    if (result == NULL && !PyErr_Occurred()) PyErr_SetNone(PyExc_StopIteration);
    return result;
}

/* Sets StopIteration(value), the way a generator returns `value` to a caller
   that is not `yield from` (which gets it through am_send instead). */
static void aioc_stop_with(PyObject *value) {
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
}

/* For Python subclasses, which do not inherit am_send (CPython 3.11). */
static PyObject *aioc_event_send_method(PyObject *self, PyObject *value) {
    PyObject *result;
    if (aioc_event_send(self, value, &result) == PYGEN_NEXT) return result;
    aioc_stop_with(result);
    Py_DECREF(result);
    return NULL;
}

/* The slots' Python names, for explicit calls such as event.__await__(). */
static PyMethodDef aioc_event_methods[] = {
    {"__await__", aioc_event_iter_method, METH_NOARGS, "Return an iterator that yields the event once."},
    {"__iter__", aioc_event_iter_method, METH_NOARGS, "Return an iterator that yields the event once."},
    {"__next__", aioc_event_next_method, METH_NOARGS, "Yield the event once, then stop."},
    {"send", aioc_event_send_method, METH_O, "Yield the event, then return the value it is resumed with."},
    {"throw", aioc_event_throw, METH_VARARGS, "Raise what is thrown into a coroutine suspended on this event."},
    {"close", aioc_event_close, METH_NOARGS, "Forget that a coroutine is suspended on this event."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods aioc_event_async = {aioc_event_iter, NULL, NULL, aioc_event_send};

/* Gives a compiled type an awaitable protocol of its own: the iterator and
   async slots, and the methods that name them for explicit calls (a
   slot alone is invisible to event.__await__() or coro.send()). */
static int aioc_install_protocol(PyTypeObject *t, getiterfunc iter, iternextfunc next, PyAsyncMethods *async,
                                 PyMethodDef *methods) {
    PyMethodDef *def;
    t->tp_iter = iter;
    t->tp_iternext = next;
    t->tp_as_async = async;
    for (def = methods; def->ml_name != NULL; def++) {
        PyObject *method = PyDescr_NewMethod(t, def);
        int failed = method == NULL || PyDict_SetItemString(t->tp_dict, def->ml_name, method) < 0;
        Py_XDECREF(method);
        if (failed) return -1;
    }
    PyType_Modified(t);
    return 0;
}

/* One protocol for every compiled event type: only a base type can keep a
   freelist, so the hot events cannot inherit it from a common base. */
static int aioc_make_awaitable(PyObject *type, PyObject *raise_thrown, PyObject *await_shared) {
    PyTypeObject *t = (PyTypeObject *)type;
    if (aioc_raise_thrown == NULL) {
        Py_INCREF(raise_thrown);
        aioc_raise_thrown = raise_thrown;
        Py_INCREF(await_shared);
        aioc_await_shared = await_shared;
    }
    return aioc_install_protocol(t, aioc_event_iter, aioc_event_next, &aioc_event_async, aioc_event_methods);
}

/* -- completed awaitables ------------------------------------------------ */

/* What a compiled lock or queue returns when the operation completed at
   once (a free lock, an item to take): `yield from` and `await` on it return
   its value without yielding.  CPython 3.10 and 3.11 finish it through
   am_send, with no exception; 3.12 and later call tp_iternext, where only a
   None result comes free (NULL without an exception), so there completed()
   in completed.pxi hands out a plain generator for any other value.  The
   Cython type declares `value` as its only field. */
typedef struct { PyObject_HEAD PyObject *value; } aioc_completed;

static PySendResult aioc_completed_send(PyObject *self, PyObject *arg, PyObject **result) {
    *result = ((aioc_completed *)self)->value;
    Py_INCREF(*result);
    return PYGEN_RETURN;
}

static PyObject *aioc_completed_next(PyObject *self) {
    PyObject *value = ((aioc_completed *)self)->value;
    if (value != Py_None) aioc_stop_with(value);
    return NULL;
}

static PyObject *aioc_completed_iter(PyObject *self) {
    Py_INCREF(self);
    return self;
}

static PyObject *aioc_completed_iter_method(PyObject *self, PyObject *unused) {
    return aioc_completed_iter(self);
}

static PyObject *aioc_completed_send_method(PyObject *self, PyObject *unused) {
    aioc_stop_with(((aioc_completed *)self)->value);
    return NULL;
}

/* Like a generator that has returned: a throw raises what is thrown. */
static PyObject *aioc_completed_throw(PyObject *self, PyObject *args) {
    return PyObject_Call(aioc_raise_thrown, args, NULL);
}

static PyObject *aioc_completed_close(PyObject *self, PyObject *unused) {
    Py_RETURN_NONE;
}

static PyMethodDef aioc_completed_methods[] = {
    {"__await__", aioc_completed_iter_method, METH_NOARGS, "Return itself: it is done already."},
    {"__iter__", aioc_completed_iter_method, METH_NOARGS, "Return itself: it is done already."},
    {"__next__", aioc_completed_send_method, METH_NOARGS, "Stop with the value at once."},
    {"send", aioc_completed_send_method, METH_O, "Stop with the value at once."},
    {"throw", aioc_completed_throw, METH_VARARGS, "Raise what is thrown."},
    {"close", aioc_completed_close, METH_NOARGS, "Do nothing: it is done already."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods aioc_completed_async = {aioc_completed_iter, NULL, NULL, aioc_completed_send};

static int aioc_make_completed(PyObject *type) {
    PyTypeObject *t = (PyTypeObject *)type;
    if (aioc_raise_thrown == NULL) {
        PyErr_SetString(PyExc_SystemError, "the events' awaitable protocol is not installed yet");
        return -1;
    }
    return aioc_install_protocol(t, aioc_completed_iter, aioc_completed_next, &aioc_completed_async,
                                 aioc_completed_methods);
}

/* -- a task's type ------------------------------------------------------------ */

/* Replaces the collector's traversal of `type` (its instances' layout is the
   caller's). */
static void aioc_set_traverse(PyObject *type, traverseproc traverse) {
    ((PyTypeObject *)type)->tp_traverse = traverse;
}

/* A free list of Task objects, for programs that spawn and finish tasks
   steadily: a recycled task skips the allocator and the collector's count
   of allocations.  Only objects of Task itself go on it, never a FailedTask:
   a FailedTask's finalizer has run when it is freed, and the collector's
   "finalized" mark stays in recycled memory, so a recycled task that failed
   would never be reported.  A Task has no finalizer: its mark stays clear.
   Freed objects arrive untracked, with their fields and weak references
   cleared by the type's tp_dealloc. */
#define AIOC_TASK_FREE_LIST 256
static PyTypeObject *aioc_task_type = NULL;
static PyObject *aioc_task_free_list[AIOC_TASK_FREE_LIST];
static int aioc_task_free_count = 0;

static PyObject *aioc_task_alloc(PyTypeObject *type, Py_ssize_t nitems) {
    PyObject *o;
    if (type != aioc_task_type || aioc_task_free_count == 0) return PyType_GenericAlloc(type, nitems);
    o = aioc_task_free_list[--aioc_task_free_count];
    memset(o, 0, (size_t)type->tp_basicsize);
    PyObject_Init(o, type);
    PyObject_GC_Track(o);
    return o;
}

static void aioc_task_free(void *o) {
    if (Py_TYPE((PyObject *)o) == aioc_task_type && aioc_task_free_count < AIOC_TASK_FREE_LIST) {
        aioc_task_free_list[aioc_task_free_count++] = (PyObject *)o;
        return;
    }
    PyObject_GC_Del(o);
}

/* Task's own allocation and release; its subclasses keep the default ones. */
static void aioc_install_task_free_list(PyObject *type) {
    aioc_task_type = (PyTypeObject *)type;
    aioc_task_type->tp_alloc = aioc_task_alloc;
    aioc_task_type->tp_free = aioc_task_free;
}

/* Turns a Task into a FailedTask (same layout, a finalizer).  Instances of a
   heap type own a reference to it; the compiled loop's types are static, but
   this stays right either way. */
static void aioc_set_type(PyObject *o, PyObject *type) {
    PyTypeObject *old = Py_TYPE(o);
    if (PyType_HasFeature((PyTypeObject *)type, Py_TPFLAGS_HEAPTYPE)) Py_INCREF(type);
    Py_SET_TYPE(o, (PyTypeObject *)type);
    if (PyType_HasFeature(old, Py_TPFLAGS_HEAPTYPE)) Py_DECREF(old);
}

/* -- stream reads as their own awaitable iterators ---------------------- */

/* A compiled stream read (streams.pxi) computes its result from the stream's
   buffer every time it is sent a value: at the first send, which completes
   at once when the buffer already holds the answer, and at every resumption
   after the loop received more bytes into the buffer.  It yields itself
   while it needs more.  The value the loop sends is ignored: the bytes are
   in the buffer, so a task cancelled before it runs loses none of them. */
typedef PyObject *(*aioc_stream_step_fn)(PyObject *read);
static aioc_stream_step_fn aioc_stream_step = NULL;  /* the result, the read itself to wait, NULL on error */

static PySendResult aioc_stream_send(PyObject *self, PyObject *arg, PyObject **result) {
    PyObject *value = aioc_stream_step(self);
    *result = value;
    if (value == NULL) return PYGEN_ERROR;
    return value == self ? PYGEN_NEXT : PYGEN_RETURN;
}

static PyObject *aioc_stream_next(PyObject *self) {
    PyObject *result, *stop;
    PySendResult status = aioc_stream_send(self, Py_None, &result);
    if (status != PYGEN_RETURN) return result;
    stop = PyObject_CallOneArg(PyExc_StopIteration, result);
    Py_DECREF(result);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

static PyObject *aioc_stream_iter(PyObject *self) {
    Py_INCREF(self);
    return self;
}

static PyObject *aioc_stream_send_method(PyObject *self, PyObject *value) {
    return aioc_stream_next(self);
}

static PyObject *aioc_stream_throw(PyObject *self, PyObject *args) {
    return PyObject_Call(aioc_raise_thrown, args, NULL);
}

static PyObject *aioc_stream_close(PyObject *self, PyObject *unused) {
    Py_RETURN_NONE;
}

static PyObject *aioc_stream_iter_method(PyObject *self, PyObject *unused) {
    return aioc_stream_iter(self);
}

static PyObject *aioc_stream_next_method(PyObject *self, PyObject *unused) {
    PyObject *result = aioc_stream_next(self);
    if (result == NULL && !PyErr_Occurred()) PyErr_SetNone(PyExc_StopIteration);
    return result;
}

static PyMethodDef aioc_stream_methods[] = {
    {"__await__", aioc_stream_iter_method, METH_NOARGS, "Return the read itself: it is its own iterator."},
    {"__iter__", aioc_stream_iter_method, METH_NOARGS, "Return the read itself: it is its own iterator."},
    {"__next__", aioc_stream_next_method, METH_NOARGS, "Complete from the buffer, or yield the read to wait for bytes."},
    {"send", aioc_stream_send_method, METH_O, "Complete from the buffer, or yield the read to wait for bytes."},
    {"throw", aioc_stream_throw, METH_VARARGS, "Raise what is thrown into a coroutine suspended on this read."},
    {"close", aioc_stream_close, METH_NOARGS, "Nothing to release: the bytes stay in the stream's buffer."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods aioc_stream_async = {aioc_stream_iter, NULL, NULL, aioc_stream_send};

static int aioc_make_stream_awaitable(PyObject *type, aioc_stream_step_fn step) {
    PyTypeObject *t = (PyTypeObject *)type;
    aioc_stream_step = step;
    return aioc_install_protocol(t, aioc_stream_iter, aioc_stream_next, &aioc_stream_async, aioc_stream_methods);
}

/* -- stepping coroutines ------------------------------------------------ */

/* 0 it yielded, 1 it returned, -1 it raised (the exception stays set).
   Return values come without a StopIteration. */
static int aioc_send(PyObject *coro, PyObject *arg, PyObject **result) {
    PySendResult status = PyIter_Send(coro, arg, result);
    if (status == PYGEN_ERROR) return -1;
    return status == PYGEN_RETURN;
}

static int aioc_throw(PyObject *coro, PyObject *exc, PyObject **result) {
    static PyObject *name = NULL;
    if (name == NULL && (name = PyUnicode_InternFromString("throw")) == NULL) return -1;
    *result = PyObject_CallMethodOneArg(coro, name, exc);
    if (*result != NULL) return 0;
    if (PyErr_ExceptionMatches(PyExc_StopIteration) && _PyGen_FetchStopIterationValue(result) == 0)
        return 1;
    return -1;
}

/* Hands Cython an exception that is already set, so that a try block catches it. */
static int aioc_reraise(void) { return -1; }

/* -- garbage collection of what the loop holds in C ---------------------- */

/* The loop keeps tasks, events and sockets in C tables (the fd table, the
   timer heap, the ready ring) that Cython's generated tp_traverse cannot see:
   a loop dropped with a pending task would be a cycle the collector never
   finds.  These wrap the generated slots and add the C-held references. */
typedef int (*aioc_visit_held_fn)(PyObject *self, visitproc visit, void *arg);
typedef void (*aioc_clear_held_fn)(PyObject *self);

static traverseproc aioc_loop_base_traverse = NULL;
static inquiry aioc_loop_base_clear = NULL;
static aioc_visit_held_fn aioc_loop_visit_held = NULL;
static aioc_clear_held_fn aioc_loop_clear_held = NULL;

static int aioc_loop_traverse(PyObject *self, visitproc visit, void *arg) {
    int status = aioc_loop_base_traverse(self, visit, arg);
    return status ? status : aioc_loop_visit_held(self, visit, arg);
}

static int aioc_loop_clear(PyObject *self) {
    aioc_loop_clear_held(self);
    return aioc_loop_base_clear != NULL ? aioc_loop_base_clear(self) : 0;
}

static int aioc_install_gc(PyObject *type, aioc_visit_held_fn visit, aioc_clear_held_fn clear) {
    PyTypeObject *t = (PyTypeObject *)type;
    if (!PyType_HasFeature(t, Py_TPFLAGS_HAVE_GC) || t->tp_traverse == NULL) {
        PyErr_SetString(PyExc_SystemError, "the loop type has no garbage collector support");
        return -1;
    }
    aioc_loop_base_traverse = t->tp_traverse;
    aioc_loop_base_clear = t->tp_clear;
    aioc_loop_visit_held = visit;
    aioc_loop_clear_held = clear;
    t->tp_traverse = aioc_loop_traverse;
    t->tp_clear = aioc_loop_clear;
    return 0;
}

#endif
