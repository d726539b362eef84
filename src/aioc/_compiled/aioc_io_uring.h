/* io_uring through its three system calls and the mmapped rings, for the
   io_uring backend (io_uring.pxi).

   Raw system calls rather than liburing: the loop needs a handful of
   operations (poll, recv, multishot accept, send, their cancellation, one
   enter per pass), liburing would have to
   be bundled into every wheel or be present on every target, and its inline
   helpers change between releases.  The ring protocol itself is the stable
   kernel ABI of <linux/io_uring.h>.

   Where that header does not exist (or with AIOC_NO_IO_URING) the same names
   are stubs that fail with ENOSYS, so that the compiled loop still builds;
   aioc_io_uring_error() then says ENOSYS and the backend is not offered.  Even
   with the header, io_uring may be refused at run time (seccomp, the
   kernel.io_uring_disabled sysctl): aioc_io_uring_error() tries it. */
#ifndef AIOC_IO_URING_H
#define AIOC_IO_URING_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__) && !defined(AIOC_NO_IO_URING) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#define AIOC_HAVE_IO_URING 1
#endif
#endif
#ifndef AIOC_HAVE_IO_URING
#define AIOC_HAVE_IO_URING 0
#endif

/* A completion as the backend reads it: copied out of the ring, so that the
   ring slot is free again before any Python code runs. */
typedef struct { uint64_t user_data; int32_t res; uint32_t flags; } aioc_cqe;

/* IORING_CQE_F_MORE: a multishot request stays armed after this completion. */
#define AIOC_CQE_MORE (1U << 1)
/* IORING_CQE_F_BUFFER: the completion used provided buffer flags >> 16. */
#define AIOC_CQE_BUFFER (1U << 0)

#if AIOC_HAVE_IO_URING

#include <linux/io_uring.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    int fd;
    unsigned features;
    unsigned sq_entries, cq_entries;
    unsigned *sq_khead, *sq_ktail, *sq_kflags, sq_mask, sq_tail;
    unsigned *cq_khead, *cq_ktail, cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *ring_ptr; size_t ring_len;   /* SQ and CQ rings, one mapping (FEAT_SINGLE_MMAP) */
    size_t sqes_len;
    uint64_t overflows;                /* passes that found the CQ overflowed */
    int disabled;                      /* made R_DISABLED: enabled by the first enter */
    /* Provided buffers (IORING_REGISTER_PBUF_RING): the kernel picks one
       only when a recv has data, so a waiting reader holds no memory. */
    struct io_uring_buf_ring *buf_ring;
    size_t buf_ring_len;
    char *buf_memory;
    unsigned buf_count, buf_size;
    uint16_t buf_tail;
} aioc_ring;

static int aioc_sys_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int aioc_sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags,
                          void *arg, size_t argsz) {
    return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, arg, argsz);
}

static void aioc_ring_free_buffers(aioc_ring *r) {
    if (r->buf_ring != NULL)
        munmap(r->buf_ring, r->buf_ring_len);
    if (r->buf_memory != NULL)
        munmap(r->buf_memory, (size_t)r->buf_count * r->buf_size);
    r->buf_ring = NULL;
    r->buf_memory = NULL;
}

static void aioc_ring_unmap(aioc_ring *r) {
    if (r->sqes != NULL && r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_len);
    if (r->ring_ptr != NULL && r->ring_ptr != MAP_FAILED)
        munmap(r->ring_ptr, r->ring_len);
    if (r->fd >= 0)
        close(r->fd);
    r->sqes = NULL;
    r->ring_ptr = NULL;
    r->fd = -1;
}

/* 0, or -errno.  The CQ is made `cq_entries` deep, deeper than the SQ: a
   pass may complete more than it submitted (old polls, removals). */
static int aioc_ring_init(aioc_ring *r, unsigned sq_entries, unsigned cq_entries) {
    struct io_uring_params p;
    unsigned i, *sq_array;
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    memset(&p, 0, sizeof(p));
    /* DEFER_TASKRUN: the kernel finishes requests (a recv copies its data)
       only inside io_uring_enter, at the point of the pass where epoll's
       loop would do the same recv itself, not at any system call return;
       it needs SINGLE_ISSUER, and R_DISABLED leaves the choice of that
       issuer to the thread that first enters (aioc_ring_enter). */
    /* TASKRUN_FLAG: the kernel flags the SQ ring while completions wait to be
       posted by the next enter (aioc_ring_work_pending). */
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL
        | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED
        | IORING_SETUP_TASKRUN_FLAG;
    p.cq_entries = cq_entries;
    r->fd = aioc_sys_setup(sq_entries, &p);
    r->disabled = r->fd >= 0;
    if (r->fd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN
            | IORING_SETUP_TASKRUN_FLAG;
        p.cq_entries = cq_entries;
        r->fd = aioc_sys_setup(sq_entries, &p);
    }
    if (r->fd < 0 && errno == EINVAL) {  /* an older kernel without the newer flags */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        p.cq_entries = cq_entries;
        r->fd = aioc_sys_setup(sq_entries, &p);
    }
    if (r->fd < 0)
        return -errno;
    /* The loop relies on: one mapping, no dropped completions, a timeout
       passed to io_uring_enter itself. */
    if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_NODROP)
            || !(p.features & IORING_FEAT_EXT_ARG)) {
        aioc_ring_unmap(r);
        return -ENOSYS;
    }
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->ring_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    if (p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe) > r->ring_len)
        r->ring_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    r->ring_ptr = mmap(NULL, r->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    if (r->ring_ptr == MAP_FAILED) {
        int err = errno;
        aioc_ring_unmap(r);
        return -err;
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        int err = errno;
        aioc_ring_unmap(r);
        return -err;
    }
    char *base = (char *)r->ring_ptr;
    r->sq_khead = (unsigned *)(base + p.sq_off.head);
    r->sq_ktail = (unsigned *)(base + p.sq_off.tail);
    r->sq_kflags = (unsigned *)(base + p.sq_off.flags);
    r->sq_mask = *(unsigned *)(base + p.sq_off.ring_mask);
    r->sq_tail = *r->sq_ktail;
    sq_array = (unsigned *)(base + p.sq_off.array);
    for (i = 0; i < p.sq_entries; i++)  /* SQE i always sits at index i */
        sq_array[i] = i;
    r->cq_khead = (unsigned *)(base + p.cq_off.head);
    r->cq_ktail = (unsigned *)(base + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(base + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(base + p.cq_off.cqes);
    return 0;
}

static void aioc_ring_exit(aioc_ring *r) {
    aioc_ring_unmap(r);        /* the ring first: the kernel lets go of the buffers with it */
    aioc_ring_free_buffers(r);
}

/* Give buffer `bid` (back) to the kernel. */
static void aioc_ring_return_buffer(aioc_ring *r, unsigned bid) {
    struct io_uring_buf *buf = &r->buf_ring->bufs[r->buf_tail & (r->buf_count - 1)];
    buf->addr = (uint64_t)(uintptr_t)(r->buf_memory + (size_t)bid * r->buf_size);
    buf->len = r->buf_size;
    buf->bid = (uint16_t)bid;
    r->buf_tail++;
    __atomic_store_n(&r->buf_ring->tail, r->buf_tail, __ATOMIC_RELEASE);
}

static char *aioc_ring_buffer(aioc_ring *r, unsigned bid) {
    return r->buf_memory + (size_t)bid * r->buf_size;
}

/* `count` (a power of two) buffers of `size` bytes for recv to pick from,
   mapped lazily: untouched pages cost nothing.  0, or -errno. */
static int aioc_ring_provide_buffers(aioc_ring *r, unsigned count, unsigned size) {
    struct io_uring_buf_reg reg;
    unsigned i;
    r->buf_ring_len = count * sizeof(struct io_uring_buf);
    r->buf_ring = mmap(NULL, r->buf_ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->buf_ring == MAP_FAILED) {
        r->buf_ring = NULL;
        return -errno;
    }
    r->buf_memory = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->buf_memory == MAP_FAILED) {
        int err = errno;
        r->buf_memory = NULL;
        aioc_ring_free_buffers(r);
        return -err;
    }
    r->buf_count = count;
    r->buf_size = size;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)r->buf_ring;
    reg.ring_entries = count;
    reg.bgid = 0;
    if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) {
        int err = errno;
        aioc_ring_free_buffers(r);
        return -err;
    }
    r->buf_tail = 0;
    for (i = 0; i < count; i++)
        aioc_ring_return_buffer(r, i);
    return 0;
}

/* SQEs prepared but not yet taken by the kernel. */
static unsigned aioc_ring_unsubmitted(aioc_ring *r) {
    return r->sq_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
}

/* Whether an enter has work without waiting: SQEs to submit, or completions
   the kernel has ready to post (IORING_SQ_TASKRUN) or kept aside (a full CQ).
   An enter may still find nothing: it is a hint, read without a system call. */
static int aioc_ring_work_pending(aioc_ring *r) {
    return r->sq_tail != __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE)
        || (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

/* Make the prepared SQEs visible to the kernel (the next enter takes them). */
static void aioc_ring_publish(aioc_ring *r) {
    __atomic_store_n(r->sq_ktail, r->sq_tail, __ATOMIC_RELEASE);
}

/* Submit what is prepared and, with `wait`, wait up to `timeout_ns` for one
   completion.  The number submitted, or -errno (ETIME: the wait timed out). */
static int aioc_ring_enter(aioc_ring *r, int wait, long long timeout_ns) {
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    unsigned flags = IORING_ENTER_GETEVENTS;
    unsigned submit;
    int n;
    if (r->disabled) {  /* this thread becomes the ring's one issuer */
        if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
            return -errno;
        r->disabled = 0;
    }
    aioc_ring_publish(r);
    submit = aioc_ring_unsubmitted(r);
    if (!wait) {
        n = aioc_sys_enter(r->fd, submit, 0, flags, NULL, 0);
    } else {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        memset(&arg, 0, sizeof(arg));
        arg.sigmask_sz = _NSIG / 8;
        arg.ts = (uint64_t)(uintptr_t)&ts;
        n = aioc_sys_enter(r->fd, submit, 1, flags | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
    }
    return n < 0 ? -errno : n;
}

/* The next free SQE, zeroed; NULL when the SQ is full (submit, then retry). */
static struct io_uring_sqe *aioc_ring_sqe(aioc_ring *r) {
    struct io_uring_sqe *sqe;
    if (r->sq_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE) >= r->sq_entries)
        return NULL;
    sqe = &r->sqes[r->sq_tail & r->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    r->sq_tail++;
    return sqe;
}

/* Readiness of `fd` for `events` (POLLIN/POLLOUT values), once or, with
   `multishot`, at every wake-up until removed.  0, or -EBUSY if the SQ is full. */
static int aioc_ring_poll_add(aioc_ring *r, int fd, uint32_t events, uint64_t user_data, int multishot) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = events;
    sqe->len = multishot ? IORING_POLL_ADD_MULTI : 0;
    sqe->user_data = user_data;
    return 0;
}

/* Remove the poll tagged `target`.  Its own completion is skipped when it
   succeeds (where the kernel can); else it arrives tagged `user_data`. */
static int aioc_ring_poll_remove(aioc_ring *r, uint64_t target, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_POLL_REMOVE;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = user_data;
    if (r->features & IORING_FEAT_CQE_SKIP)
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* recv(fd, <a provided buffer>, size) once the socket has data, done by the
   kernel.  send(fd, data, size, MSG_NOSIGNAL) once: the data must stay valid
   until the completion arrives.  0, or -EBUSY if the SQ is full. */
static int aioc_ring_recv(aioc_ring *r, int fd, unsigned size, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->len = size;  /* at most: the buffer the kernel picks may be smaller */
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    sqe->user_data = user_data;
    return 0;
}

static int aioc_ring_send(aioc_ring *r, int fd, const void *data, unsigned size, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)data;
    sqe->len = size;
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = user_data;
    return 0;
}

/* accept4(fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC) each time a
   connection comes, done by the kernel (IORING_ACCEPT_MULTISHOT): one
   completion per connection, flagged IORING_CQE_F_MORE while the request
   stays armed.  Every accept writes the peer's address to the same
   `address`, which must stay valid until the last completion.  0, or -EBUSY
   if the SQ is full. */
static int aioc_ring_accept_multishot(aioc_ring *r, int fd, void *address, unsigned *length, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)address;
    sqe->addr2 = (uint64_t)(uintptr_t)length;
    sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->user_data = user_data;
    return 0;
}

/* Cancel the request tagged `target` (it completes with -ECANCELED, or with
   its result if it finished first).  The cancel's own success is skipped. */
static int aioc_ring_cancel(aioc_ring *r, uint64_t target, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = user_data;
    if (r->features & IORING_FEAT_CQE_SKIP)
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* Cancel every request in flight: before the ring goes, so that the kernel
   writes into no buffer after it has been freed.  Its own completion is skipped. */
static int aioc_ring_cancel_all(aioc_ring *r, uint64_t user_data) {
    struct io_uring_sqe *sqe = aioc_ring_sqe(r);
    if (sqe == NULL)
        return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->cancel_flags = IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY;
    sqe->user_data = user_data;
    if (r->features & IORING_FEAT_CQE_SKIP)
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* Copy up to `max` completions out of the CQ and free their slots.  When the
   kernel had to keep completions aside (the CQ was full: IORING_SQ_CQ_OVERFLOW),
   the next enter with GETEVENTS moves them in; *overflowed says so. */
static unsigned aioc_ring_reap(aioc_ring *r, aioc_cqe *out, unsigned max, int *overflowed) {
    unsigned head = *r->cq_khead;
    unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    while (head != tail && n < max) {
        struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
        head++;
    }
    __atomic_store_n(r->cq_khead, head, __ATOMIC_RELEASE);
    *overflowed = (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW) != 0;
    if (*overflowed)
        r->overflows++;
    return n;
}

/* 0 if io_uring can be set up here, now (a ring made and closed); else why not, an errno. */
static int aioc_io_uring_error(void) {
    aioc_ring r;
    int rc = aioc_ring_init(&r, 4, 8);
    if (rc < 0)
        return -rc;
    rc = aioc_ring_provide_buffers(&r, 1, 4096);  /* provided buffer rings: Linux 5.19 */
    aioc_ring_exit(&r);
    return rc < 0 ? -rc : 0;
}

#else  /* no io_uring: stubs */

typedef struct { int fd; unsigned sq_entries, cq_entries; uint64_t overflows; } aioc_ring;
static int aioc_ring_init(aioc_ring *r, unsigned sq_entries, unsigned cq_entries) {
    (void)sq_entries; (void)cq_entries; r->fd = -1; return -ENOSYS;
}
static void aioc_ring_exit(aioc_ring *r) { r->fd = -1; }
static unsigned aioc_ring_unsubmitted(aioc_ring *r) { (void)r; return 0; }
static int aioc_ring_work_pending(aioc_ring *r) { (void)r; return 0; }
static int aioc_ring_enter(aioc_ring *r, int wait, long long timeout_ns) {
    (void)r; (void)wait; (void)timeout_ns; return -ENOSYS;
}
static int aioc_ring_poll_add(aioc_ring *r, int fd, uint32_t events, uint64_t user_data, int multishot) {
    (void)r; (void)fd; (void)events; (void)user_data; (void)multishot; return -ENOSYS;
}
static int aioc_ring_poll_remove(aioc_ring *r, uint64_t target, uint64_t user_data) {
    (void)r; (void)target; (void)user_data; return -ENOSYS;
}
static int aioc_ring_recv(aioc_ring *r, int fd, unsigned size, uint64_t user_data) {
    (void)r; (void)fd; (void)size; (void)user_data; return -ENOSYS;
}
static int aioc_ring_provide_buffers(aioc_ring *r, unsigned count, unsigned size) {
    (void)r; (void)count; (void)size; return -ENOSYS;
}
static int aioc_ring_accept_multishot(aioc_ring *r, int fd, void *address, unsigned *length, uint64_t user_data) {
    (void)r; (void)fd; (void)address; (void)length; (void)user_data; return -ENOSYS;
}
static void aioc_ring_return_buffer(aioc_ring *r, unsigned bid) { (void)r; (void)bid; }
static char *aioc_ring_buffer(aioc_ring *r, unsigned bid) { (void)r; (void)bid; return NULL; }
static int aioc_ring_send(aioc_ring *r, int fd, const void *data, unsigned size, uint64_t user_data) {
    (void)r; (void)fd; (void)data; (void)size; (void)user_data; return -ENOSYS;
}
static int aioc_ring_cancel(aioc_ring *r, uint64_t target, uint64_t user_data) {
    (void)r; (void)target; (void)user_data; return -ENOSYS;
}
static int aioc_ring_cancel_all(aioc_ring *r, uint64_t user_data) {
    (void)r; (void)user_data; return -ENOSYS;
}
static unsigned aioc_ring_reap(aioc_ring *r, aioc_cqe *out, unsigned max, int *overflowed) {
    (void)r; (void)out; (void)max; *overflowed = 0; return 0;
}
static int aioc_io_uring_error(void) { return ENOSYS; }

#endif

#endif
