/*
 * The second C reference server of aioc's benchmark: the same protocol and
 * replies as c_epoll_server.c, on io_uring instead of epoll, to show what a
 * completion-based kernel interface costs per request.  Single-threaded, raw
 * system calls through <linux/io_uring.h> (no liburing), and one
 * io_uring_enter() per pass of the loop, which both submits the new requests
 * and waits for completions:
 *
 *   - a multishot accept per listening port: one submission, a completion per
 *     connection;
 *   - keep-alive connections: a multishot recv that picks its buffers from a
 *     provided buffer ring, armed once per connection; a send per reply;
 *   - connection-per-request: a single recv, the send, then the close, all as
 *     ring operations.
 *
 * A connection is closed only when none of its operations is in flight, so a
 * completion always belongs to the connection its descriptor names.
 *
 * Usage: c_io_uring_server [LIFETIME_SECONDS]   (default 900; it exits then)
 * Prints "READY <pid> c-io_uring <port> <port> <port> <port>" once it listens.
 * If the kernel refuses io_uring (EPERM: disabled by sysctl or a seccomp
 * filter; ENOSYS: not built in) it says so on stderr and exits with status 3.
 *
 * Built at run time by `python -m aioc.bench` with `cc -O2`, next to
 * c_server_common.h, which holds what it shares with c_epoll_server.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_RECV_MULTISHOT
#error "these kernel headers predate multishot recv (Linux 6.0)"
#endif

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define NBUFS 1024 /* provided receive buffers: a power of two */
#define BUF_SIZE 4096
#define BUF_GROUP 0

/* What a completion is about: the low byte of user_data; the descriptor (or
 * the listener's mode) is above it. */
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CLOSE };

struct conn {
    int mode;
    int match;             /* how much of "\r\n\r\n" the last bytes matched */
    size_t unterminated;   /* bytes since the last complete request */
    unsigned pending;      /* replies owed */
    size_t off;            /* bytes of the current reply already sent */
    unsigned char recv_armed, sending, closing;
};

#include "c_server_common.h"

/* The ring, as mapped from the kernel. */
static int ring_fd;
static unsigned *sq_head, *sq_tail, sq_mask, sq_entries, *sq_array;
static unsigned *cq_head, *cq_tail, cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static unsigned sq_local_tail;

/* The provided buffers and their ring. */
static struct io_uring_buf_ring *buf_ring;
static char *buf_base;
static unsigned short buf_local_tail;

static int sys_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(unsigned to_submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, ring_fd, to_submit, min_complete, flags, NULL, 0);
}

static int sys_register(unsigned opcode, void *arg, unsigned nr) {
    return (int)syscall(__NR_io_uring_register, ring_fd, opcode, arg, nr);
}

/* -- the ring ------------------------------------------------------------- */

static void unavailable(const char *what) {
    int err = errno;
    fprintf(stderr, "io_uring unavailable: %s: %s%s\n", what, strerror(err),
            err == EPERM    ? " (disabled: see /proc/sys/kernel/io_uring_disabled, or a seccomp filter)"
            : err == ENOSYS ? " (this kernel has no io_uring)"
                            : "");
    exit(3);
}

static void ring_setup(void) {
    /* The cheapest task-work modes first; older kernels refuse their flags
     * with EINVAL, and get the next set. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    struct io_uring_params p;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        ring_fd = sys_setup(SQ_ENTRIES, &p);
        if (ring_fd >= 0 || errno != EINVAL) break;
    }
    if (ring_fd < 0) unavailable("io_uring_setup");

    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single && cq_size > sq_size) sq_size = cq_size;
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) die("mmap sq ring");
    char *cq = sq;
    if (!single) {
        cq = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) die("mmap cq ring");
    }
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) die("mmap sqes");

    sq_head = (unsigned *)(sq + p.sq_off.head);
    sq_tail = (unsigned *)(sq + p.sq_off.tail);
    sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    sq_entries = *(unsigned *)(sq + p.sq_off.ring_entries);
    sq_array = (unsigned *)(sq + p.sq_off.array);
    for (unsigned i = 0; i < sq_entries; i++) sq_array[i] = i; /* slot i always holds sqes[i] */
    sq_local_tail = *sq_tail;
    cq_head = (unsigned *)(cq + p.cq_off.head);
    cq_tail = (unsigned *)(cq + p.cq_off.tail);
    cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

static void recycle_buffer(unsigned short bid) {
    struct io_uring_buf *b = &buf_ring->bufs[buf_local_tail & (NBUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(buf_base + (size_t)bid * BUF_SIZE);
    b->len = BUF_SIZE;
    b->bid = bid;
    buf_local_tail++;
}

static void publish_buffers(void) {
    __atomic_store_n(&buf_ring->tail, buf_local_tail, __ATOMIC_RELEASE);
}

static void buffers_setup(void) {
    size_t ring_bytes = NBUFS * sizeof(struct io_uring_buf);
    buf_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf_ring == MAP_FAILED) die("mmap buffer ring");
    buf_base = malloc((size_t)NBUFS * BUF_SIZE);
    if (!buf_base) die("malloc buffers");
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)buf_ring;
    reg.ring_entries = NBUFS;
    reg.bgid = BUF_GROUP;
    if (sys_register(IORING_REGISTER_PBUF_RING, &reg, 1) < 0) unavailable("IORING_REGISTER_PBUF_RING");
    for (unsigned i = 0; i < NBUFS; i++) recycle_buffer((unsigned short)i);
    publish_buffers();
}

static unsigned unsubmitted(void) {
    return sq_local_tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE);
}

/* Hand the queued submissions to the kernel: the tail store publishes them. */
static void publish_submissions(void) {
    __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
}

static struct io_uring_sqe *next_sqe(uint64_t user_data) {
    while (unsubmitted() >= sq_entries) { /* full: submit without waiting */
        publish_submissions();
        if (sys_enter(unsubmitted(), 0, 0) < 0 && errno != EINTR && errno != EBUSY && errno != EAGAIN)
            die("io_uring_enter");
    }
    struct io_uring_sqe *sqe = &sqes[sq_local_tail & sq_mask];
    memset(sqe, 0, sizeof *sqe);
    sqe->user_data = user_data;
    sq_local_tail++;
    return sqe;
}

static uint64_t tag(int fd, int op) { return ((uint64_t)(unsigned)fd << 8) | (uint64_t)op; }

/* -- operations ----------------------------------------------------------- */

static void arm_accept(int mode) {
    struct io_uring_sqe *sqe = next_sqe(tag(mode, OP_ACCEPT));
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = listener[mode];
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
}

/* Keep-alive connections keep one multishot recv armed; a connection-per-request
 * connection needs one request, so a single recv. */
static void arm_recv(int fd, struct conn *c) {
    struct io_uring_sqe *sqe = next_sqe(tag(fd, OP_RECV));
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    if (!close_after[c->mode]) sqe->ioprio = IORING_RECV_MULTISHOT;
    c->recv_armed = 1;
}

static void start_send(int fd, struct conn *c) {
    struct io_uring_sqe *sqe = next_sqe(tag(fd, OP_SEND));
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)(reply[c->mode] + c->off);
    sqe->len = (unsigned)(reply_len[c->mode] - c->off);
    sqe->msg_flags = MSG_NOSIGNAL;
    c->sending = 1;
}

/* Close once nothing is in flight; a multishot recv still armed is ended by
 * shutting the socket down, and its last completion then closes. */
static void finish(int fd, struct conn *c) {
    if (c->sending) return;
    if (c->recv_armed) {
        shutdown(fd, SHUT_RDWR);
        return;
    }
    struct io_uring_sqe *sqe = next_sqe(tag(fd, OP_CLOSE));
    sqe->opcode = IORING_OP_CLOSE;
    sqe->fd = fd;
    sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
}

static void begin_close(int fd, struct conn *c) {
    if (!c->closing) {
        c->closing = 1;
        finish(fd, c);
    }
}

static void on_accept(int mode, struct io_uring_cqe *cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(mode); /* the multishot ended: re-arm it */
    if (cqe->res < 0) return; /* out of fds, or an aborted connection: the next one may work */
    int fd = cqe->res;
    struct conn *c = conn_for(fd);
    memset(c, 0, sizeof *c);
    c->mode = mode;
    arm_recv(fd, c);
}

static void on_recv(int fd, struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) c->recv_armed = 0;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned short bid = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (res > 0 && !c->closing) scan_requests(c, buf_base + (size_t)bid * BUF_SIZE, (size_t)res);
        recycle_buffer(bid);
    }
    if (c->closing) {
        finish(fd, c);
        return;
    }
    if (res == 0 || (res < 0 && res != -ENOBUFS) || c->unterminated > MAX_REQUEST) {
        begin_close(fd, c);
        return;
    }
    if (c->pending && !c->sending) start_send(fd, c);
    /* Out of buffers ends a multishot recv (-ENOBUFS), as does a single recv
     * that has not yet seen a whole request: ask again. */
    if (!c->recv_armed && !(close_after[c->mode] && c->pending)) arm_recv(fd, c);
}

static void on_send(int fd, struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    c->sending = 0;
    if (c->closing) {
        finish(fd, c);
        return;
    }
    if (cqe->res < 0) {
        begin_close(fd, c);
        return;
    }
    if (reply_sent(c, (size_t)cqe->res)) {
        begin_close(fd, c);
        return;
    }
    if (c->pending) start_send(fd, c);
}

int main(int argc, char **argv) {
    start_bounded(argc, argv);
    build_replies();
    ring_setup();
    buffers_setup();

    printf("READY %d c-io_uring", (int)getpid());
    for (int m = 0; m < NMODES; m++) {
        int port = open_listener(m, 0);
        arm_accept(m);
        printf(" %d", port);
    }
    printf("\n");
    fflush(stdout);

    for (;;) {
        /* One system call per pass: submit what the last pass queued, and
         * wait for at least one completion. */
        publish_submissions();
        if (sys_enter(unsubmitted(), 1, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR && errno != EBUSY &&
            errno != EAGAIN)
            die("io_uring_enter");
        unsigned head = *cq_head;
        unsigned tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & cq_mask];
            int fd = (int)(cqe->user_data >> 8);
            switch (cqe->user_data & 0xff) {
            case OP_ACCEPT: on_accept(fd, cqe); break;
            case OP_RECV: on_recv(fd, cqe); break;
            case OP_SEND: on_send(fd, cqe); break;
            default: break; /* a failed close: nothing to do */
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
        publish_buffers();
    }
}
