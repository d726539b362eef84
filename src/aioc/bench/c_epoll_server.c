/*
 * The C reference server of aioc's benchmark: the limit a Python server can
 * approach.  Minimal on purpose: single-threaded, non-blocking sockets,
 * level-triggered epoll, no parsing beyond finding the blank line that ends a
 * request.  It speaks the protocol of aioc/bench/protocol.py: one listening
 * port on 127.0.0.1 per reply mode, in this order:
 *
 *   close   64 B body, "Connection: close", the connection is closed after it
 *   ka64    64 B body, keep-alive
 *   ka1024  1 KiB body, keep-alive
 *   ka16384 16 KiB body, keep-alive
 *
 * Usage: c_epoll_server [LIFETIME_SECONDS]   (default 900; it exits then)
 * Prints "READY <pid> c-epoll <port> <port> <port> <port>" once it listens.
 *
 * Built at run time by `python -m aioc.bench` with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define NMODES 4
#define MAX_REQUEST 65536
#define MAX_EVENTS 512
#define ACCEPTS_PER_WAKE 64

static const int body_size[NMODES] = {64, 64, 1024, 16384};
static const int close_after[NMODES] = {1, 0, 0, 0};
static char *reply[NMODES];
static size_t reply_len[NMODES];
static int listener[NMODES];

struct conn {
    int mode;          /* index into reply[] */
    int match;         /* how much of "\r\n\r\n" the last bytes matched */
    size_t unterminated; /* bytes since the last complete request */
    unsigned pending;  /* replies owed */
    size_t off;        /* bytes of the current reply already sent */
    int want_out;      /* waiting for writability (reads paused) */
};

static struct conn *conns;
static size_t nconns;
static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void build_replies(void) {
    static const char pattern[] = "0123456789abcdef";
    for (int m = 0; m < NMODES; m++) {
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                          "Connection: %s\r\n\r\n",
                          body_size[m], close_after[m] ? "close" : "keep-alive");
        reply_len[m] = (size_t)hl + (size_t)body_size[m];
        reply[m] = malloc(reply_len[m]);
        if (!reply[m]) die("malloc");
        memcpy(reply[m], head, (size_t)hl);
        for (int i = 0; i < body_size[m]; i++) reply[m][hl + i] = pattern[i % 16];
    }
}

static struct conn *conn_for(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd) n *= 2;
        conns = realloc(conns, n * sizeof *conns);
        if (!conns) die("realloc");
        memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
        nconns = n;
    }
    return &conns[fd];
}

static void set_interest(int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl MOD");
}

static void drop(int fd) { close(fd); /* also removes it from the epoll set */ }

/* Send what is owed; returns 0 if the connection was closed. */
static int flush(int fd, struct conn *c) {
    while (c->pending) {
        ssize_t w = send(fd, reply[c->mode] + c->off, reply_len[c->mode] - c->off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) {
                    c->want_out = 1;
                    set_interest(fd, EPOLLOUT); /* backpressure: stop reading */
                }
                return 1;
            }
            if (errno == EINTR) continue;
            drop(fd);
            return 0;
        }
        c->off += (size_t)w;
        if (c->off == reply_len[c->mode]) {
            c->off = 0;
            c->pending--;
            if (close_after[c->mode]) {
                drop(fd);
                return 0;
            }
        }
    }
    if (c->want_out) {
        c->want_out = 0;
        set_interest(fd, EPOLLIN);
    }
    return 1;
}

static void on_readable(int fd, struct conn *c) {
    static char buf[65536];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r == 0) {
        drop(fd);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) drop(fd);
        return;
    }
    int match = c->match;
    for (ssize_t i = 0; i < r; i++) {
        char ch = buf[i];
        if (ch == '\r') {
            match = match == 2 ? 3 : 1;
        } else if (ch == '\n' && (match == 1 || match == 3)) {
            if (match == 3) {
                c->pending++;
                c->unterminated = 0;
                match = 0;
                continue;
            }
            match = 2;
        } else {
            match = 0;
        }
        c->unterminated++;
    }
    c->match = match;
    if (c->unterminated > MAX_REQUEST) {
        drop(fd);
        return;
    }
    if (c->pending) flush(fd, c);
}

static void on_acceptable(int lfd, int mode) {
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return; /* EAGAIN, or out of fds: try again on the next wake */
        struct conn *c = conn_for(fd);
        memset(c, 0, sizeof *c);
        c->mode = mode;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            return;
        }
    }
}

int main(int argc, char **argv) {
    int lifetime = argc > 1 ? atoi(argv[1]) : 900;
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    alarm(lifetime > 0 ? (unsigned)lifetime : 900u); /* bounded in time whatever happens */

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    build_replies();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    printf("READY %d c-epoll", (int)getpid());
    for (int m = 0; m < NMODES; m++) {
        int one = 1;
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
        addr.sin_port = 0;
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
        if (listen(fd, 4096) < 0) die("listen");
        if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
        listener[m] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl ADD");
        printf(" %d", ntohs(addr.sin_port));
    }
    printf("\n");
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            int mode = -1;
            for (int m = 0; m < NMODES; m++)
                if (listener[m] == fd) mode = m;
            if (mode >= 0) {
                on_acceptable(fd, mode);
                continue;
            }
            struct conn *c = &conns[fd];
            if (c->want_out) {
                flush(fd, c); /* EPOLLOUT, or an error that send() will report */
            } else if (events[i].events & EPOLLIN) {
                on_readable(fd, c);
            } else if (events[i].events & (EPOLLERR | EPOLLHUP)) {
                drop(fd);
            }
        }
    }
}
