/*
 * What the two C reference servers of aioc's benchmark (c_epoll_server.c and
 * c_io_uring_server.c) share, so that they differ only in how they wait for
 * the kernel: the fixed replies of aioc/bench/protocol.py, the table of
 * connections indexed by descriptor, the scan for the blank line that ends a
 * request, the bounded start-up and the listening ports on 127.0.0.1.
 *
 * Each server includes it once, after its system headers and its own
 * `struct conn`, which must have at least these fields:
 *
 *   int mode;             index into reply[]
 *   int match;            how much of "\r\n\r\n" the last bytes matched
 *   size_t unterminated;  bytes since the last complete request
 *   unsigned pending;     replies owed
 *   size_t off;           bytes of the current reply already sent
 *
 * Everything here is static: a server is one translation unit.
 */
#ifndef AIOC_BENCH_C_SERVER_COMMON_H
#define AIOC_BENCH_C_SERVER_COMMON_H

#define NMODES 4
#define MAX_REQUEST 65536

/* The reply modes, in the order of the ports the READY line lists. */
static const int body_size[NMODES] = {64, 64, 1024, 16384};
static const int close_after[NMODES] = {1, 0, 0, 0};
static char *reply[NMODES];
static size_t reply_len[NMODES];
static int listener[NMODES];

static struct conn *conns;
static size_t nconns;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Die at `lifetime` seconds (argv[1], default 900) or with the parent, ignore
 * SIGPIPE, and take as many descriptors as the hard limit allows. */
static void start_bounded(int argc, char **argv) {
    int lifetime = argc > 1 ? atoi(argv[1]) : 900;
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    alarm(lifetime > 0 ? (unsigned)lifetime : 900u); /* bounded in time whatever happens */

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
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

/* Listen on 127.0.0.1 at a port the kernel picks, for reply mode `mode`:
 * fills listener[mode] and returns the port. */
static int open_listener(int mode, int socket_flags) {
    int one = 1;
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM | socket_flags, 0);
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    listener[mode] = fd;
    return ntohs(addr.sin_port);
}

/* The connection of descriptor `fd`, growing the table to hold it. */
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

/* Count the requests that `n` received bytes complete (each one owes a
 * reply), carrying a "\r\n\r\n" split across reads over to the next call. */
static inline void scan_requests(struct conn *c, const char *buf, size_t n) {
    int match = c->match;
    for (size_t i = 0; i < n; i++) {
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
}

/* Account `sent` more bytes of the current reply.  Returns 1 when that reply
 * is complete and its mode closes the connection after it. */
static inline int reply_sent(struct conn *c, size_t sent) {
    c->off += sent;
    if (c->off == reply_len[c->mode]) {
        c->off = 0;
        c->pending--;
        return close_after[c->mode];
    }
    return 0;
}

#endif
