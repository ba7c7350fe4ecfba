/*
 * Output capture for ocivirt-init (issue 12, "output kept"; design in shim/README.md).
 *
 * The process's stdout and stderr are pipes read by a logger process (forked by PID 1 before the
 * process, so PID 1's signal loop never waits on a disk). The logger's main thread (the reader)
 * turns what it reads into records
 *
 *     2026-11-30T00:50:23.123456789Z stdout F the line\n
 *
 * (CRI's format: stream stdout|stderr|ocivirt, F a full line, P part of one) and hands them in
 * batches of at most PIPE_BUF bytes (atomic) to a non-blocking pipe read by the writer thread,
 * which appends them to `current` in the log directory and renames it to `previous` when it would
 * pass the cap. Memory is fixed (a few buffers); the only queue is kernel pipes.
 *
 * Backpressure, not loss, while the disk is merely slow: the reader waits for room in the pipe to
 * the writer, so a fast process is slowed to the disk's pace. Only when the writer has taken
 * nothing for STALL_MS (a stuck disk) does the reader drop whole batches, counting them, until the
 * writer's pipe is half empty again; then a record says how much was dropped. Write errors
 * (ENOSPC, EIO) are counted and reported the same way.
 *
 * The log directory can be written by the container: every file is made by the writer itself
 * (O_CREAT|O_EXCL|O_NOFOLLOW beneath the directory fd), whatever sits at `current` or `previous`
 * is renamed or removed, never opened.
 */
#define _GNU_SOURCE
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)           /* asked for each pipe (the kernel may give less) */
#define READ_BYTES (64 << 10)
#define HEAD_MAX 48                    /* timestamp, stream, tag, three spaces */
#define CONTENT_MAX (PIPE_BUF - HEAD_MAX - 1) /* longer lines become P records, then an F */
#define STALL_MS 500                   /* a writer taking nothing this long is stuck: drop */
#define FINISH_MS 5000                 /* PID 1 waits this long for the logger at the end */
#define REOPEN_NS 1000000000LL         /* a log file that cannot be made is retried once a second */

enum { OUT, ERR, NSTREAMS };
static const char *const stream_names[] = {"stdout", "stderr", "ocivirt"};
#define NOTICE 2

/* PID 1's view */
static int pipe_w[NSTREAMS] = {-1, -1};
static int ctl_w = -1;          /* closed by PID 1 at the end: "drain and exit" */
static pid_t logger = -1;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  buf[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, "ocivirt-init: log: ", 19);
  w = write(STDERR_FILENO, buf, (size_t)n);
  (void)w;
}

static int64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* "2026-11-30T00:50:23.123456789Z" (now, UTC) into out (40 bytes); returns its length. */
static size_t stamp(char *out) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
  return n > 0 && n < 40 ? (size_t)n : 0;
}

/* "TIMESTAMP STREAM TAG " into out (HEAD_MAX bytes) from a stamp; returns its length. */
static size_t head(char *out, const char *ts, size_t tslen, int stream, char tag) {
  size_t sl = strlen(stream_names[stream]);
  memcpy(out, ts, tslen);
  out[tslen] = ' ';
  memcpy(out + tslen + 1, stream_names[stream], sl);
  out[tslen + 1 + sl] = ' ';
  out[tslen + 2 + sl] = tag;
  out[tslen + 3 + sl] = ' ';
  return tslen + 4 + sl;
}

/* A notice record (stream ocivirt) into out; returns its length, 0 if it does not fit. */
static size_t notice(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static size_t notice(char *out, size_t size, const char *fmt, ...) {
  char ts[40];
  size_t h = head(out, ts, stamp(ts), NOTICE, 'F');
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + h, size - h - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= size - h - 1) return 0;
  out[h + (size_t)n] = '\n';
  return h + (size_t)n + 1;
}

/* ---------- the writer thread: records -> current / previous ---------- */

struct writer {
  int in;                       /* read end of the reader's pipe */
  int dir;                      /* the log directory */
  uint64_t cap;                 /* bytes per file */
  int fd;                       /* current, or -1 */
  uint64_t size;                /* bytes in current */
  int64_t retry_at;             /* when to try making current again */
  uint64_t lost;                /* bytes not written since the last notice */
  int lost_errno;
};

/* Whatever sits at `name` (a symlink, a FIFO, a directory) goes, never opened nor followed:
 * `current` becomes `previous`; else it is removed; what cannot be (a directory with content) is
 * renamed aside (`junk.N`: the container's own mess, in its own directory). */
static void clear_name(int dir, const char *name) {
  if (!strcmp(name, "current") && renameat(dir, "current", dir, "previous") == 0) return;
  if (unlinkat(dir, name, 0) == 0 || unlinkat(dir, name, AT_REMOVEDIR) == 0) return;
  char aside[40];
  snprintf(aside, sizeof aside, "junk.%lld", (long long)now_ns(CLOCK_MONOTONIC));
  renameat(dir, name, dir, aside);
}

/* A fresh `current`, made by us (O_EXCL): nothing the container placed there is ever written. */
static void open_current(struct writer *w) {
  for (int attempt = 0; attempt < 3 && w->fd < 0; attempt++) {
    w->fd = openat(w->dir, "current", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (w->fd >= 0) break;
    w->lost_errno = errno;
    if (errno != EEXIST) break;
    /* taken: the last run's current (kept as previous) or something the container put there */
    clear_name(w->dir, attempt == 0 ? "current" : "previous");
    if (attempt == 1) clear_name(w->dir, "current");
  }
  w->size = 0;
  if (w->fd < 0) w->retry_at = now_ns(CLOCK_MONOTONIC) + REOPEN_NS;
}

static void rotate(struct writer *w) {
  close(w->fd);
  w->fd = -1;
  /* a rename replaces a file at previous; a directory there (the container's) is removed first */
  if (renameat(w->dir, "current", w->dir, "previous") < 0) {
    clear_name(w->dir, "previous");
    if (renameat(w->dir, "current", w->dir, "previous") < 0) clear_name(w->dir, "current");
  }
  open_current(w);
}

static void write_file(struct writer *w, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(w->fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      w->lost += len;
      w->lost_errno = n < 0 ? errno : EIO;
      return;
    }
    w->size += (uint64_t)n;
    p += n;
    len -= (size_t)n;
  }
}

/* Whole records (p ends with '\n'), split between files at record boundaries. */
static void put(struct writer *w, const char *p, size_t len) {
  while (len > 0) {
    if (w->fd < 0 && now_ns(CLOCK_MONOTONIC) >= w->retry_at) open_current(w);
    if (w->fd < 0) {
      w->lost += len;
      return;
    }
    if (w->lost) {
      char rec[256];
      size_t n = notice(rec, sizeof rec, "ocivirt-init: %llu bytes of log lost (%s)", (unsigned long long)w->lost,
                        strerror(w->lost_errno));
      w->lost = 0;
      write_file(w, rec, n);
      if (w->lost) return; /* still failing: counted again */
    }
    uint64_t room = w->size < w->cap ? w->cap - w->size : 0;
    size_t take = len;
    if (take > room) {
      /* the last record that still fits; none: a new file (a record alone is far below the cap) */
      const char *nl = room ? memrchr(p, '\n', (size_t)room) : NULL;
      if (!nl && w->size == 0) nl = memchr(p, '\n', len);
      if (!nl) {
        rotate(w);
        continue;
      }
      take = (size_t)(nl - p) + 1;
    }
    write_file(w, p, take);
    p += take;
    len -= take;
    if (len > 0 && w->fd >= 0) rotate(w);
  }
}

static void *writer_main(void *arg) {
  struct writer *w = arg;
  static char buf[READ_BYTES];
  size_t have = 0;
  open_current(w);
  for (;;) {
    ssize_t n = read(w->in, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    const char *nl = memrchr(buf, '\n', have);
    if (!nl) {
      if (have == sizeof buf) have = 0; /* cannot happen: batches are whole records, far smaller */
      continue; /* the rest of this record is on its way */
    }
    size_t whole = (size_t)(nl - buf) + 1;
    put(w, buf, whole);
    memmove(buf, buf + whole, have - whole);
    have -= whole;
  }
  if (w->fd >= 0) fdatasync(w->fd);
  return NULL;
}

/* ---------- the reader: pipes -> records -> the writer ---------- */

struct reader {
  int out;                      /* write end of the pipe to the writer (O_NONBLOCK) */
  int out_cap;                  /* its size */
  int tee;                      /* the console (non-blocking), or -1 */
  char ts[40];                  /* the stamp of what is being read now */
  size_t tslen;
  char batch[PIPE_BUF];
  size_t len, content, records;
  bool dropping;
  uint64_t dropped_bytes, dropped_records;
};

static int queued(const struct reader *r) {
  int n = 0;
  return ioctl(r->out, FIONREAD, &n) == 0 ? n : 0;
}

/* Hands `len` bytes (<= PIPE_BUF: all or nothing) to the writer, waiting up to STALL_MS for room. */
static bool hand_over(struct reader *r, const char *p, size_t len) {
  int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)STALL_MS * 1000000;
  for (;;) {
    if (write(r->out, p, len) == (ssize_t)len) return true;
    if (errno != EAGAIN && errno != EINTR) return false;
    int left = (int)((deadline - now_ns(CLOCK_MONOTONIC)) / 1000000);
    struct pollfd pf = {r->out, POLLOUT, 0};
    if (left <= 0 || poll(&pf, 1, left) == 0) return false;
  }
}

/* The record saying what was dropped; false when the writer has no room for it either. */
static bool report_drops(struct reader *r) {
  if (!r->dropped_bytes) return true;
  char rec[256];
  size_t n = notice(rec, sizeof rec, "ocivirt-init: %llu bytes (%llu records) of output dropped: the log writer took nothing for %d ms",
                    (unsigned long long)r->dropped_bytes, (unsigned long long)r->dropped_records, STALL_MS);
  if (!hand_over(r, rec, n)) return false;
  r->dropped_bytes = r->dropped_records = 0;
  return true;
}

/* The batch to the writer; dropped (and counted) while the writer is stuck, until its pipe is half empty. */
static void flush(struct reader *r) {
  if (r->len == 0) return;
  if (r->dropping && queued(r) <= r->out_cap / 2) r->dropping = false;
  if (r->dropping || !report_drops(r) || !hand_over(r, r->batch, r->len)) {
    r->dropping = true;
    r->dropped_bytes += r->content;
    r->dropped_records += r->records;
  }
  r->len = r->content = r->records = 0;
}

static void record(struct reader *r, int stream, char tag, const char *p, size_t len) {
  if (r->len + HEAD_MAX + len + 1 > sizeof r->batch) flush(r);
  size_t h = head(r->batch + r->len, r->ts, r->tslen, stream, tag);
  memcpy(r->batch + r->len + h, p, len);
  r->batch[r->len + h + len] = '\n';
  r->len += h + len + 1;
  r->content += len + (tag == 'F'); /* the output's own bytes, its newline included */
  r->records++;
}

/* One read's worth: full lines become F records, a line's unfinished end a P record (now: the
 * reader never holds output back). */
static void records(struct reader *r, int stream, const char *p, size_t n) {
  while (n > 0) {
    size_t scan = n < CONTENT_MAX + 1 ? n : CONTENT_MAX + 1;
    const char *nl = memchr(p, '\n', scan);
    size_t len = nl ? (size_t)(nl - p) : (n < CONTENT_MAX ? n : CONTENT_MAX);
    record(r, stream, nl ? 'F' : 'P', p, len);
    len += nl ? 1 : 0;
    p += len;
    n -= len;
  }
}

static void to_console(struct reader *r, const char *p, size_t n) {
  if (r->tee < 0) return;
  /* best effort: a console nobody drains loses output there, never here */
  if (write(r->tee, p, n) < 0 && errno != EAGAIN && errno != EINTR) {
    close(r->tee);
    r->tee = -1;
  }
}

/* Returns false at EOF or error. */
static bool pump(struct reader *r, int fd, int stream) {
  static char buf[READ_BYTES];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  r->tslen = stamp(r->ts);
  to_console(r, buf, (size_t)n);
  records(r, stream, buf, (size_t)n);
  return true;
}

_Noreturn static void logger_main(int in[NSTREAMS], int ctl, int dir, uint64_t cap, int tee_fd) {
  prctl(PR_SET_NAME, "ocivirt-log", 0, 0, 0);
  int q[2];
  if (pipe2(q, O_CLOEXEC) < 0) {
    note("pipe: %s", strerror(errno));
    _exit(1);
  }
  struct reader *r = calloc(1, sizeof *r);
  struct writer w = {.in = q[0], .dir = dir, .cap = cap, .fd = -1};
  if (!r) _exit(1);
  fcntl(q[1], F_SETPIPE_SZ, PIPE_BYTES);
  r->out = q[1];
  r->out_cap = fcntl(q[1], F_GETPIPE_SZ);
  r->tee = tee_fd;
  fcntl(q[1], F_SETFL, O_NONBLOCK);
  pthread_t t;
  if ((errno = pthread_create(&t, NULL, writer_main, &w)) != 0) {
    note("writer thread: %s", strerror(errno));
    _exit(1);
  }
  struct pollfd p[3] = {{in[OUT], POLLIN, 0}, {in[ERR], POLLIN, 0}, {ctl, POLLIN, 0}};
  for (;;) {
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int s = 0; s < NSTREAMS; s++)
      if (p[s].fd >= 0 && p[s].revents && !pump(r, p[s].fd, s)) p[s].fd = -1;
    flush(r);
    if (p[2].revents) break; /* PID 1 closed it: the process is gone */
  }
  /* drain what the pipes hold now (writers that outlive the process are not waited for) */
  for (int s = 0; s < NSTREAMS; s++) {
    if (p[s].fd < 0) continue;
    fcntl(p[s].fd, F_SETFL, O_NONBLOCK);
    while (pump(r, p[s].fd, s)) {
      struct pollfd one = {p[s].fd, POLLIN, 0};
      if (poll(&one, 1, 0) <= 0 || !(one.revents & POLLIN)) break;
    }
  }
  flush(r);
  r->dropping = false;
  report_drops(r);
  close(r->out);
  pthread_join(t, NULL);
  _exit(0);
}

/* ---------- PID 1 ---------- */

/* The log directory, created when missing; any symlink on the way is refused, and a non-directory
 * (or symlink) the container left at its last component is removed and made again. */
static int open_log_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash || !slash[1]) return errno = EINVAL, -1;
  char parent[PATH_MAX];
  size_t pl = slash == path ? 1 : (size_t)(slash - path);
  if (pl >= sizeof parent) return errno = ENAMETOOLONG, -1;
  memcpy(parent, path, pl);
  parent[pl] = '\0';
  struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  int pfd = (int)syscall(SYS_openat2, AT_FDCWD, parent, &how, sizeof how);
  if (pfd < 0) return -1;
  const char *name = slash + 1;
  int fd = -1;
  for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
    if (mkdirat(pfd, name, 0750) < 0 && errno != EEXIST) break;
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && (errno == ELOOP || errno == ENOTDIR)) unlinkat(pfd, name, 0);
  }
  int e = errno;
  close(pfd);
  errno = e;
  return fd;
}

bool log_start(const char *dir_path, uint64_t file_bytes) {
  int dir = open_log_dir(dir_path);
  if (dir < 0) {
    note("%s: %s: output goes to the console only", dir_path, strerror(errno));
    return false;
  }
  /* a separate, non-blocking open of the console: O_NONBLOCK on the shared one would reach stdin */
  int tee_fd = isatty(STDOUT_FILENO) ? open("/proc/self/fd/1", O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) : -1;
  int in[NSTREAMS], ctl[2];
  for (int s = 0; s < NSTREAMS; s++) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
      note("pipe: %s: output goes to the console only", strerror(errno));
      return false;
    }
    fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);
    in[s] = p[0];
    pipe_w[s] = p[1];
  }
  if (pipe2(ctl, O_CLOEXEC) < 0) {
    note("pipe: %s: output goes to the console only", strerror(errno));
    return false;
  }
  logger = fork();
  if (logger < 0) {
    note("fork: %s: output goes to the console only", strerror(errno));
    return false;
  }
  if (logger == 0) {
    close(ctl[1]);
    for (int s = 0; s < NSTREAMS; s++) close(pipe_w[s]);
    logger_main(in, ctl[0], dir, file_bytes, tee_fd);
  }
  for (int s = 0; s < NSTREAMS; s++) close(in[s]);
  close(ctl[0]);
  close(dir);
  if (tee_fd >= 0) close(tee_fd);
  ctl_w = ctl[1];
  return true;
}

void log_child_stdio(void) {
  if (logger < 0) return;
  /* dup2 clears close-on-exec on the copies; the originals still close at exec */
  dup2(pipe_w[OUT], STDOUT_FILENO);
  dup2(pipe_w[ERR], STDERR_FILENO);
}

void log_parent_stdio(void) {
  if (logger < 0) return;
  dup2(pipe_w[ERR], STDERR_FILENO);
  close(pipe_w[OUT]);
  close(pipe_w[ERR]);
}

void log_reaped(pid_t pid) {
  if (pid == logger) logger = -1;
}

void log_finish(void) {
  if (ctl_w < 0) return;
  close(ctl_w);
  ctl_w = -1;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)FINISH_MS * 1000000;
  while (logger > 0) {
    int st;
    pid_t w = waitpid(logger, &st, WNOHANG);
    if (w == logger || (w < 0 && errno == ECHILD)) break;
    int64_t left = deadline - now_ns(CLOCK_MONOTONIC);
    if (left <= 0) break; /* a stuck disk: leaving PID 1 ends the logger with the namespace */
    struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
    sigtimedwait(&chld, NULL, &ts);
  }
  logger = -1;
}
