/* An LD_PRELOAD shim for the I/O failure tests: from the Nth write operation on a file under
 * FAILIO_PREFIX on, every such operation fails with FAILIO_ERRNO (ENOSPC: a full disk; EIO: a
 * failing fsync or device). Counted operations: write, pwrite, writev, pwritev, fsync, fdatasync,
 * ftruncate, rename and link into the prefix. It intercepts libc, so it reaches SQLite, DuckDB and
 * the Rust code of deltalake alike. With FAILIO_COUNT set, it only counts, and writes the total to
 * that file at exit.
 *
 * A process forked after the shim loaded (tests/reliability/_fork_server.py) calls failio_reset()
 * once it set the FAILIO_ variables, to start over with them, and failio_report() before it leaves
 * with _exit (which runs no destructor). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

static char tracked[MAX_FD];
static const char *prefix;
static size_t prefix_len;
static long fail_at = -1;
static int fail_errno = ENOSPC;
static long count;
static const char *count_file;

static void setup(void) __attribute__((constructor));
static void report(void) __attribute__((destructor));

static void setup(void) {
    prefix = getenv("FAILIO_PREFIX");
    prefix_len = prefix ? strlen(prefix) : 0;
    const char *at = getenv("FAILIO_AT");
    fail_at = at ? atol(at) : -1;
    const char *kind = getenv("FAILIO_ERRNO");
    fail_errno = (kind && strcmp(kind, "EIO") == 0) ? EIO : ENOSPC;
    count_file = getenv("FAILIO_COUNT");
}

static void report(void) {
    if (!count_file) return;
    FILE *out = fopen(count_file, "w");
    if (out) { fprintf(out, "%ld\n", __atomic_load_n(&count, __ATOMIC_SEQ_CST)); fclose(out); }
}

/* Start over with the FAILIO_ variables as they are now: no operation counted, no file tracked
 * (files opened before were opened under the old prefix). */
void failio_reset(void) {
    memset(tracked, 0, sizeof tracked);
    __atomic_store_n(&count, 0, __ATOMIC_SEQ_CST);
    setup();
}

void failio_report(void) { report(); }

static int under_prefix(int dirfd, const char *path) {
    if (!prefix || !path) return 0;
    char full[PATH_MAX];
    if (path[0] == '/') {
        snprintf(full, sizeof full, "%s", path);
    } else if (dirfd == AT_FDCWD) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return 0;
        snprintf(full, sizeof full, "%s/%s", cwd, path);
    } else {
        char link[64], dir[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, dir, sizeof dir - 1);
        if (n < 0) return 0;
        dir[n] = 0;
        snprintf(full, sizeof full, "%s/%s", dir, path);
    }
    return strncmp(full, prefix, prefix_len) == 0;
}

/* 1 when this operation must fail (the Nth counted operation and every later one). */
static int failing(void) {
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);
    return fail_at > 0 && n >= fail_at;
}

static int track(int fd, int dirfd, const char *path, int flags) {
    if (fd >= 0 && fd < MAX_FD) tracked[fd] = (flags & (O_WRONLY | O_RDWR | O_CREAT)) && under_prefix(dirfd, path);
    return fd;
}

#define REAL(name, ret, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name);

static mode_t mode_of(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    REAL(open, int, const char *, int, ...)
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    return track(real_open(path, flags, mode), AT_FDCWD, path, flags);
}
int open64(const char *path, int flags, ...) {
    REAL(open64, int, const char *, int, ...)
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    return track(real_open64(path, flags, mode), AT_FDCWD, path, flags);
}
int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat, int, int, const char *, int, ...)
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    return track(real_openat(dirfd, path, flags, mode), dirfd, path, flags);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64, int, int, const char *, int, ...)
    va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap);
    return track(real_openat64(dirfd, path, flags, mode), dirfd, path, flags);
}
int close(int fd) {
    REAL(close, int, int)
    if (fd >= 0 && fd < MAX_FD) tracked[fd] = 0;
    return real_close(fd);
}

#define GUARD(fd) \
    if ((fd) >= 0 && (fd) < MAX_FD && tracked[fd] && failing()) { errno = fail_errno; return -1; }

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write, ssize_t, int, const void *, size_t)
    GUARD(fd) return real_write(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite, ssize_t, int, const void *, size_t, off_t)
    GUARD(fd) return real_pwrite(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off_t)
    GUARD(fd) return real_pwrite64(fd, buf, n, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev, ssize_t, int, const struct iovec *, int)
    GUARD(fd) return real_writev(fd, iov, cnt);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t)
    GUARD(fd) return real_pwritev(fd, iov, cnt, off);
}
int fsync(int fd) {
    REAL(fsync, int, int)
    GUARD(fd) return real_fsync(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync, int, int)
    GUARD(fd) return real_fdatasync(fd);
}
int ftruncate(int fd, off_t len) {
    REAL(ftruncate, int, int, off_t)
    GUARD(fd) return real_ftruncate(fd, len);
}
int ftruncate64(int fd, off_t len) {
    REAL(ftruncate64, int, int, off_t)
    GUARD(fd) return real_ftruncate64(fd, len);
}
int rename(const char *from, const char *to) {
    REAL(rename, int, const char *, const char *)
    if (under_prefix(AT_FDCWD, to) && failing()) { errno = fail_errno; return -1; }
    return real_rename(from, to);
}
int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(renameat, int, int, const char *, int, const char *)
    if (under_prefix(tofd, to) && failing()) { errno = fail_errno; return -1; }
    return real_renameat(fromfd, from, tofd, to);
}
int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags) {
    REAL(renameat2, int, int, const char *, int, const char *, unsigned int)
    if (under_prefix(tofd, to) && failing()) { errno = fail_errno; return -1; }
    return real_renameat2(fromfd, from, tofd, to, flags);
}
int link(const char *from, const char *to) {
    REAL(link, int, const char *, const char *)
    if (under_prefix(AT_FDCWD, to) && failing()) { errno = fail_errno; return -1; }
    return real_link(from, to);
}
int linkat(int fromfd, const char *from, int tofd, const char *to, int flags) {
    REAL(linkat, int, int, const char *, int, const char *, int)
    if (under_prefix(tofd, to) && failing()) { errno = fail_errno; return -1; }
    return real_linkat(fromfd, from, tofd, to, flags);
}
