/* epoll where the system has it; elsewhere (or built with AIOC_NO_EPOLL) the
   same names as stubs that fail with ENOSYS, so that the compiled loop builds
   with the select backend only.  AIOC_HAVE_EPOLL says which, at run time. */
#ifndef AIOC_EPOLL_H
#define AIOC_EPOLL_H

#if defined(__linux__) && !defined(AIOC_NO_EPOLL)
#include <sys/epoll.h>
#define AIOC_HAVE_EPOLL 1
#else
#include <errno.h>
#include <stdint.h>
#define AIOC_HAVE_EPOLL 0
typedef union epoll_data { void *ptr; int fd; uint32_t u32; uint64_t u64; } epoll_data_t;
struct epoll_event { uint32_t events; epoll_data_t data; };
enum { EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010 };
enum { EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3, EPOLL_CLOEXEC = 0 };
static int epoll_create1(int flags) { (void)flags; errno = ENOSYS; return -1; }
static int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    (void)epfd; (void)op; (void)fd; (void)event; errno = ENOSYS; return -1;
}
static int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    (void)epfd; (void)events; (void)maxevents; (void)timeout; errno = ENOSYS; return -1;
}
#endif

#endif
