/*
 * libvirt's event loop for libvirt-binding: an epoll loop on a thread of its own, registered with
 * virEventRegisterImpl. It serves keepalives, domain events, connection close and streams.
 *
 * Why not libvirt's default loop (virEventRegisterDefaultImpl, GLib): libvirt's RPC client turns
 * its connection socket's watch off before each call and on again after it, and the keepalive
 * resets its timer on every message received. The GLib loop destroys and recreates a GSource and
 * wakes its thread for each of those: two to three wake-ups and loop iterations per call (measured:
 * 1,000 lookups + XML reads, 8 at a time, took 331-398 ms of CPU, against 239-257 ms with no event
 * loop at all, and 245-248 ms with this one). Here a watch change is
 * one epoll_ctl, which the kernel applies to the epoll_wait in progress (the loop thread is not
 * woken), and a timer change wakes the loop only when the timer is due before the loop would wake
 * anyway.
 *
 * With several calls in flight on a connection, libvirt's client passes the socket's I/O from
 * thread to thread: the thread that is done turns the watch on, the next one turns it off again
 * a moment later. The socket is readable most of that time (replies to the others), so the loop
 * would wake for nothing: the handler finds another thread doing the I/O and returns without
 * reading (measured: 40-65 loop rounds per call with 4-8 calls in flight). Two holds keep the
 * watch off epoll meanwhile, both lifted by the watch's next update:
 * - a watch turned on by a binding call while other calls run is held until those calls are all
 *   done (lvb_event_loop_call), or for HOLD_MS at most: what arrives meanwhile is read by the
 *   threads doing the calls' I/O, events included (libvirt's client reads whatever comes);
 * - a watch whose handler returned without updating it (the RPC client updates it at the end of
 *   every handler that did its work) is held for HOLD_MS at most.
 *
 * Contract (libvirt's, as its GLib loop keeps it): callbacks run on the loop thread, never with
 * the loop's lock held (they may add, update and remove watches and timers); a removed watch or
 * timer is never called again, and its free callback runs later on the loop thread, never inside
 * the remove call.
 */
#include "runtime.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* The longest a watch is held off epoll (see above). */
#define HOLD_MS 20

typedef struct {
  int watch, fd, events, removed;
  int64_t held_until;   /* 0: not held off epoll */
  uint32_t in_epoll;    /* what epoll has for fd (the same in every handle of fd) */
  unsigned updates;     /* handle_update calls */
  virEventHandleCallback cb;
  void *opaque;
  virFreeCallback ff;
} ev_handle;

typedef struct {
  int timer, interval, removed; /* interval < 0: disabled */
  int64_t due;                  /* ms on the monotonic clock */
  virEventTimeoutCallback cb;
  void *opaque;
  virFreeCallback ff;
} ev_timer;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int epfd = -1, wakefd = -1;
static ev_handle **handles;
static size_t nhandles, handles_cap;
static ev_timer **timers;
static size_t ntimers, timers_cap;
static int next_watch = 1, next_timer = 1;
static int removed_pending; /* something removed waits for the loop to free it */
/* When the loop's epoll_wait returns by itself (INT64_MAX: never); 0 while the loop is awake,
 * since it looks at the timers again before it sleeps. */
static int64_t wake_at;
static unsigned long iterations; /* epoll_wait returns: for the tests */
static pthread_t loop_thread;
static int calls_running;   /* binding calls inside libvirt (lvb_event_loop_call) */
static __thread int in_call; /* this thread is running a binding call */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_locked(void) {
  uint64_t one = 1;
  if (wake_at != 0 && write(wakefd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is full, so a wake-up is pending anyway */
  }
}

static int grow(void ***arr, size_t *cap, size_t n) {
  if (n < *cap) return 0;
  size_t c = *cap ? *cap * 2 : 16;
  void **a = realloc(*arr, c * sizeof *a);
  if (!a) return -1;
  *arr = a;
  *cap = c;
  return 0;
}

static uint32_t to_epoll(int events) {
  return (events & VIR_EVENT_HANDLE_READABLE ? EPOLLIN : 0) | (events & VIR_EVENT_HANDLE_WRITABLE ? EPOLLOUT : 0);
}

static int from_epoll(uint32_t ev) {
  return (ev & EPOLLIN ? VIR_EVENT_HANDLE_READABLE : 0) | (ev & EPOLLOUT ? VIR_EVENT_HANDLE_WRITABLE : 0) |
         (ev & EPOLLERR ? VIR_EVENT_HANDLE_ERROR : 0) | (ev & EPOLLHUP ? VIR_EVENT_HANDLE_HANGUP : 0);
}

/* Makes epoll watch `fd` for what its live watches want (several watches may share an fd). An fd
 * nothing wants is taken out: epoll reports errors and hang-ups even on an empty mask, and a
 * socket libvirt's RPC client is using must not wake the loop. */
static void fd_sync_locked(int fd) {
  int events = 0;
  uint32_t cur = 0; /* what epoll has for fd now (0: not in it) */
  for (size_t i = 0; i < nhandles; i++) {
    if (handles[i]->fd != fd) continue;
    cur |= handles[i]->in_epoll;
    if (!handles[i]->removed && !handles[i]->held_until) events |= handles[i]->events;
  }
  uint32_t want = to_epoll(events);
  if (want == cur) return;
  struct epoll_event ev = {.events = want, .data.fd = fd};
  if (!want) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  } else if (epoll_ctl(epfd, cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
    /* out of step (an fd closed and reused behind libvirt's back): the other operation fits */
    if (errno == ENOENT) epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    else if (errno == EEXIST) epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
  }
  for (size_t i = 0; i < nhandles; i++)
    if (handles[i]->fd == fd) handles[i]->in_epoll = want;
}

static ev_handle *handle_find_locked(int watch) {
  for (size_t i = 0; i < nhandles; i++)
    if (handles[i]->watch == watch && !handles[i]->removed) return handles[i];
  return NULL;
}

static ev_timer *timer_find_locked(int timer) {
  for (size_t i = 0; i < ntimers; i++)
    if (timers[i]->timer == timer && !timers[i]->removed) return timers[i];
  return NULL;
}

/* ---------- virEventRegisterImpl callbacks (any thread) ---------- */

static int handle_add(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff) {
  ev_handle *h = calloc(1, sizeof *h);
  if (!h) return -1;
  h->fd = fd;
  h->events = events;
  h->cb = cb;
  h->opaque = opaque;
  h->ff = ff;
  pthread_mutex_lock(&mu);
  if (grow((void ***)&handles, &handles_cap, nhandles) < 0) {
    pthread_mutex_unlock(&mu);
    free(h);
    return -1;
  }
  h->watch = next_watch++;
  for (size_t i = 0; i < nhandles; i++)
    if (handles[i]->fd == fd) h->in_epoll = handles[i]->in_epoll;
  handles[nhandles++] = h;
  fd_sync_locked(fd);
  int watch = h->watch;
  pthread_mutex_unlock(&mu);
  return watch;
}

static void handle_update(int watch, int events) {
  pthread_mutex_lock(&mu);
  ev_handle *h = handle_find_locked(watch);
  if (h) {
    h->updates++;
    int64_t hold = 0;
    if (events && calls_running > in_call && !pthread_equal(pthread_self(), loop_thread)) {
      /* turned on while other calls run: one of them will turn it off again (see above) */
      hold = now_ms() + HOLD_MS;
      if (hold < wake_at) wake_locked();
    }
    if (h->events != events || h->held_until != hold) {
      h->events = events;
      h->held_until = hold;
      fd_sync_locked(h->fd);
    }
  }
  pthread_mutex_unlock(&mu);
}

static int handle_remove(int watch) {
  pthread_mutex_lock(&mu);
  ev_handle *h = handle_find_locked(watch);
  if (h) {
    h->removed = 1;
    fd_sync_locked(h->fd);
    removed_pending = 1;
    wake_locked(); /* so that its free callback runs soon */
  }
  pthread_mutex_unlock(&mu);
  return h ? 0 : -1;
}

static int timer_add(int interval, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff) {
  ev_timer *t = calloc(1, sizeof *t);
  if (!t) return -1;
  t->interval = interval;
  t->cb = cb;
  t->opaque = opaque;
  t->ff = ff;
  pthread_mutex_lock(&mu);
  if (grow((void ***)&timers, &timers_cap, ntimers) < 0) {
    pthread_mutex_unlock(&mu);
    free(t);
    return -1;
  }
  t->timer = next_timer++;
  timers[ntimers++] = t;
  if (interval >= 0) {
    t->due = now_ms() + interval;
    if (t->due < wake_at) wake_locked();
  }
  int timer = t->timer;
  pthread_mutex_unlock(&mu);
  return timer;
}

static void timer_update(int timer, int interval) {
  pthread_mutex_lock(&mu);
  ev_timer *t = timer_find_locked(timer);
  if (t) {
    t->interval = interval;
    /* like libvirt's loops: a new interval starts now */
    if (interval >= 0) {
      t->due = now_ms() + interval;
      if (t->due < wake_at) wake_locked();
    }
  }
  pthread_mutex_unlock(&mu);
}

static int timer_remove(int timer) {
  pthread_mutex_lock(&mu);
  ev_timer *t = timer_find_locked(timer);
  if (t) {
    t->removed = 1;
    removed_pending = 1;
    wake_locked();
  }
  pthread_mutex_unlock(&mu);
  return t ? 0 : -1;
}

/* ---------- the loop thread ---------- */

static void run_timers(void) {
  pthread_mutex_lock(&mu);
  int64_t now = now_ms();
  /* timers added by a callback wait for the next round; the array only grows meanwhile */
  size_t n = ntimers;
  for (size_t i = 0; i < n; i++) {
    ev_timer *t = timers[i];
    if (t->removed || t->interval < 0 || t->due > now) continue;
    t->due = now + t->interval;
    int timer = t->timer;
    virEventTimeoutCallback cb = t->cb;
    void *opaque = t->opaque;
    pthread_mutex_unlock(&mu);
    cb(timer, opaque);
    pthread_mutex_lock(&mu);
  }
  pthread_mutex_unlock(&mu);
}

static void run_handles(const struct epoll_event *evs, int n) {
  pthread_mutex_lock(&mu);
  for (int e = 0; e < n; e++) {
    int fd = evs[e].data.fd;
    if (fd == wakefd) {
      uint64_t v;
      if (read(wakefd, &v, sizeof v) < 0) {
        /* EAGAIN: drained already */
      }
      continue;
    }
    for (size_t i = 0; i < nhandles; i++) {
      ev_handle *h = handles[i];
      /* the watch may have been turned off, held or removed since epoll_wait returned */
      if (h->fd != fd || h->removed || !h->events || h->held_until) continue;
      int events = from_epoll(evs[e].events) & (h->events | VIR_EVENT_HANDLE_ERROR | VIR_EVENT_HANDLE_HANGUP);
      if (!events) continue;
      int watch = h->watch;
      virEventHandleCallback cb = h->cb;
      void *opaque = h->opaque;
      unsigned updates = h->updates;
      pthread_mutex_unlock(&mu);
      cb(watch, fd, events, opaque);
      pthread_mutex_lock(&mu);
      /* h stays allocated until free_removed, on this thread */
      if (!h->removed && h->events && h->updates == updates) {
        h->held_until = now_ms() + HOLD_MS;
        fd_sync_locked(fd);
      }
    }
  }
  pthread_mutex_unlock(&mu);
}

/* Frees what was removed, calling the free callbacks without the lock. */
static void free_removed(void) {
  pthread_mutex_lock(&mu);
  if (!removed_pending) {
    pthread_mutex_unlock(&mu);
    return;
  }
  size_t nh = 0, nt = 0;
  for (size_t i = 0; i < nhandles; i++) nh += handles[i]->removed;
  for (size_t i = 0; i < ntimers; i++) nt += timers[i]->removed;
  ev_handle **gh = nh ? malloc(nh * sizeof *gh) : NULL;
  ev_timer **gt = nt ? malloc(nt * sizeof *gt) : NULL;
  if ((nh && !gh) || (nt && !gt)) {
    /* out of memory: the next round tries again */
    pthread_mutex_unlock(&mu);
    free(gh);
    free(gt);
    return;
  }
  removed_pending = 0;
  size_t j = 0, k = 0;
  for (size_t i = 0; i < nhandles; i++) {
    if (handles[i]->removed) gh[k++] = handles[i];
    else handles[j++] = handles[i];
  }
  nhandles = j;
  j = k = 0;
  for (size_t i = 0; i < ntimers; i++) {
    if (timers[i]->removed) gt[k++] = timers[i];
    else timers[j++] = timers[i];
  }
  ntimers = j;
  pthread_mutex_unlock(&mu);
  for (size_t i = 0; i < nh; i++) {
    if (gh[i]->ff) gh[i]->ff(gh[i]->opaque);
    free(gh[i]);
  }
  for (size_t i = 0; i < nt; i++) {
    if (gt[i]->ff) gt[i]->ff(gt[i]->opaque);
    free(gt[i]);
  }
  free(gh);
  free(gt);
}

static void *loop_main(void *arg) {
  (void)arg;
  struct epoll_event evs[64];
  for (;;) {
    pthread_mutex_lock(&mu);
    int64_t now = now_ms();
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < ntimers; i++)
      if (!timers[i]->removed && timers[i]->interval >= 0 && timers[i]->due < due) due = timers[i]->due;
    for (size_t i = 0; i < nhandles; i++) {
      ev_handle *h = handles[i];
      if (!h->held_until) continue;
      if (h->held_until <= now) {
        h->held_until = 0;
        fd_sync_locked(h->fd);
      } else if (h->held_until < due) {
        due = h->held_until;
      }
    }
    int wait = due == INT64_MAX ? -1 : due <= now ? 0 : due - now > INT_MAX ? INT_MAX : (int)(due - now);
    /* a timer due before this (a new one, or an update) writes to wakefd */
    wake_at = due;
    pthread_mutex_unlock(&mu);

    int n = epoll_wait(epfd, evs, sizeof evs / sizeof evs[0], wait);

    pthread_mutex_lock(&mu);
    wake_at = 0;
    iterations++;
    pthread_mutex_unlock(&mu);
    if (n < 0) {
      if (errno != EINTR) {
        /* only fails when the loop itself is broken; do not spin */
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      n = 0;
    }
    run_timers();
    run_handles(evs, n);
    free_removed();
  }
  return NULL;
}

/* Registers the loop with libvirt and starts its thread: before the first connection. */
int lvb_event_loop_start(void) {
  epfd = epoll_create1(EPOLL_CLOEXEC);
  wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epfd < 0 || wakefd < 0) return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = wakefd};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) < 0) return -1;
  pthread_mutex_lock(&mu);
  wake_at = 0;
  pthread_mutex_unlock(&mu);
  virEventRegisterImpl(handle_add, handle_update, handle_remove, timer_add, timer_update, timer_remove);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_mutex_lock(&mu);
  int rc = pthread_create(&t, &attr, loop_main, NULL);
  loop_thread = t;
  pthread_mutex_unlock(&mu);
  pthread_attr_destroy(&attr);
  return rc == 0 ? 0 : -1;
}

/* A binding call begins (1) or ends (0) its libvirt work, on its worker thread. When the last one
 * ends, the watches held for the calls are watched again. */
void lvb_event_loop_call(int begin) {
  pthread_mutex_lock(&mu);
  in_call = begin;
  calls_running += begin ? 1 : -1;
  if (!begin && calls_running == 0) {
    for (size_t i = 0; i < nhandles; i++) {
      if (handles[i]->held_until && !handles[i]->removed) {
        handles[i]->held_until = 0;
        fd_sync_locked(handles[i]->fd);
      }
    }
  }
  pthread_mutex_unlock(&mu);
}

unsigned long lvb_event_loop_iterations(void) {
  pthread_mutex_lock(&mu);
  unsigned long n = iterations;
  pthread_mutex_unlock(&mu);
  return n;
}
