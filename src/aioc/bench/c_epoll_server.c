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
 * Built at run time by `python -m aioc.bench` with `cc -O2`, next to
 * c_server_common.h, which holds what it shares with c_io_uring_server.c.
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

#define MAX_EVENTS 512
#define ACCEPTS_PER_WAKE 64

struct conn {
    int mode;          /* index into reply[] */
    int match;         /* how much of "\r\n\r\n" the last bytes matched */
    size_t unterminated; /* bytes since the last complete request */
    unsigned pending;  /* replies owed */
    size_t off;        /* bytes of the current reply already sent */
    int want_out;      /* waiting for writability (reads paused) */
};

#include "c_server_common.h"

static int ep;

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
        if (reply_sent(c, (size_t)w)) {
            drop(fd);
            return 0;
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
    scan_requests(c, buf, (size_t)r);
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
    start_bounded(argc, argv);
    build_replies();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    printf("READY %d c-epoll", (int)getpid());
    for (int m = 0; m < NMODES; m++) {
        int port = open_listener(m, SOCK_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener[m]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, listener[m], &ev) < 0) die("epoll_ctl ADD");
        printf(" %d", port);
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
