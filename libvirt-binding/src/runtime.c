/*
 * Runtime of libvirt-binding: handles, errors, async calls, libvirt's event loop and the reaper.
 *
 * Threads:
 * - the JavaScript thread reads arguments, takes a reference on every handle a call uses, and
 *   builds results;
 * - libuv worker threads run the libvirt calls (napi async work), drop those references and
 *   release what JavaScript dropped meanwhile (see the reaper);
 * - one libvirt event-loop thread (eventloop.c) serves keepalives, events and streams;
 * - one reaper thread releases connections dropped by JavaScript (free() or garbage collection),
 *   since the last reference on a connection closes it, which talks to libvirtd, and other
 *   handles no call released soon enough.
 * A handle's pointer is only used under a reference the user of it holds, so a domain that
 * outlives its connection keeps the connection alive (libvirt's own reference counting) and a
 * garbage-collected handle never frees a pointer a worker still uses.
 */
#include "runtime.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  int kind;
  void *ptr;
} lvb_handle;

/* ---------- reaper ---------- */

/*
 * Releases must not run on the JavaScript thread (the last reference on a connection talks to
 * libvirtd), but waking a thread for each one costs a few context switches per handle freed, more
 * than the release itself. So a release other than a connection's rides on the next call: the
 * worker thread of the next call to finish drops it after its libvirt call. The reaper thread
 * takes what no call took within RIDE_WAIT_MS (it is woken once for that, not per release), and
 * connections at once (their release may be a close: it must not delay a call).
 */
#define RIDE_WAIT_MS 50

typedef struct reap_item {
  int kind;
  void *ptr;
  struct reap_item *next;
} reap_item;

static pthread_mutex_t reap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reap_cv; /* on CLOCK_MONOTONIC: initialised in global_init */
static reap_item *reap_head;   /* for the reaper thread, now */
static reap_item *ride_head;   /* for the next call to finish, else the reaper after RIDE_WAIT_MS */
static int reaper_timing;      /* the reaper knows of the rides: no need to wake it for more */
static unsigned long reaper_rounds; /* times the reaper released something: for the tests */

static void release_all(reap_item *it) {
  while (it) {
    reap_item *next = it->next;
    lvb_unref(it->kind, it->ptr);
    free(it);
    it = next;
  }
}

static void *reaper_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&reap_mu);
  for (;;) {
    reap_item *now = reap_head, *rides = NULL;
    reap_head = NULL;
    if (!now) {
      if (!ride_head) {
        reaper_timing = 0;
        pthread_cond_wait(&reap_cv, &reap_mu);
        continue;
      }
      reaper_timing = 1;
      struct timespec until;
      clock_gettime(CLOCK_MONOTONIC, &until);
      until.tv_nsec += RIDE_WAIT_MS * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      if (pthread_cond_timedwait(&reap_cv, &reap_mu, &until) != ETIMEDOUT) continue;
      rides = ride_head;
      ride_head = NULL;
    }
    reaper_rounds++;
    pthread_mutex_unlock(&reap_mu);
    release_all(now);
    release_all(rides);
    pthread_mutex_lock(&reap_mu);
  }
  return NULL;
}

void lvb_release_later(int kind, void *p) {
  if (!p) return;
  reap_item *it = malloc(sizeof *it);
  if (!it) return; /* out of memory: leaking one reference beats crashing */
  it->kind = kind;
  it->ptr = p;
  pthread_mutex_lock(&reap_mu);
  if (kind == LVB_CONNECT) {
    it->next = reap_head;
    reap_head = it;
    pthread_cond_signal(&reap_cv);
  } else {
    it->next = ride_head;
    ride_head = it;
    if (!reaper_timing) {
      reaper_timing = 1;
      pthread_cond_signal(&reap_cv);
    }
  }
  pthread_mutex_unlock(&reap_mu);
}

/* Worker thread, after a call's libvirt work: releases the rides. */
static void take_rides(void) {
  pthread_mutex_lock(&reap_mu);
  reap_item *rides = ride_head;
  ride_head = NULL;
  pthread_mutex_unlock(&reap_mu);
  release_all(rides);
}

void lvb_unref(int kind, void *p) {
  if (p) lvb_kinds[kind].release(p);
}

/* ---------- libvirt ---------- */

static void quiet_errors(void *data, virErrorPtr err) {
  /* libvirt's default handler prints every error to stderr; callers get them as exceptions */
  (void)data;
  (void)err;
}

static int global_ok;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void) {
  if (virInitialize() < 0) return;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&reap_cv, &ca);
  pthread_condattr_destroy(&ca);
  virSetErrorFunc(NULL, quiet_errors);
  /* must precede the first connection: it enables keepalive, events and non-blocking streams */
  if (lvb_event_loop_start() < 0) return;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, reaper_main, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) return;
  global_ok = 1;
}

/* ---------- values ---------- */

char *lvb_strdup(const char *s) {
  return s ? strdup(s) : NULL;
}

napi_value lvb_num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

napi_value lvb_str(napi_env env, const char *s) {
  napi_value v;
  if (!s) napi_get_null(env, &v);
  else napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static int type_error(napi_env env, const char *fname, const char *arg, const char *want) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: argument %s must be %s", fname, arg, want);
  napi_throw_type_error(env, NULL, msg);
  return -1;
}

int lvb_arg_string(napi_env env, napi_value v, char **out, const char *fname, const char *arg) {
  napi_valuetype t;
  *out = NULL;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return 0;
  if (t != napi_string) return type_error(env, fname, arg, "a string or null");
  size_t len;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  char *s = malloc(len + 1);
  if (!s) return type_error(env, fname, arg, "smaller (out of memory)");
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    return type_error(env, fname, arg, "a string without NUL characters");
  }
  *out = s;
  return 0;
}

int lvb_arg_i64(napi_env env, napi_value v, int64_t *out, const char *fname, const char *arg, int optional) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  *out = 0;
  if (optional && t == napi_undefined) return 0;
  if (t == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_int64(env, v, out, &lossless);
    return lossless ? 0 : type_error(env, fname, arg, "a 64-bit signed integer");
  }
  if (t != napi_number) return type_error(env, fname, arg, "an integer");
  double d;
  napi_get_value_double(env, v, &d);
  if (d != (double)(int64_t)d) return type_error(env, fname, arg, "an integer");
  *out = (int64_t)d;
  return 0;
}

int lvb_arg_u64(napi_env env, napi_value v, uint64_t *out, const char *fname, const char *arg, int optional) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  *out = 0;
  if (optional && t == napi_undefined) return 0;
  if (t == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_uint64(env, v, out, &lossless);
    return lossless ? 0 : type_error(env, fname, arg, "a 64-bit unsigned integer");
  }
  if (t != napi_number) return type_error(env, fname, arg, "a non-negative integer");
  double d;
  napi_get_value_double(env, v, &d);
  if (d < 0 || d != (double)(uint64_t)d) return type_error(env, fname, arg, "a non-negative integer");
  *out = (uint64_t)d;
  return 0;
}

/* ---------- handles ---------- */

static napi_type_tag tag_of(int kind) {
  napi_type_tag t = {0x6c6962766972626eULL, 0x6468616e646c6500ULL + (uint64_t)kind};
  return t;
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  lvb_handle *h = data;
  lvb_release_later(h->kind, h->ptr);
  free(h);
}

napi_value lvb_wrap(napi_env env, int kind, void *p) {
  napi_value obj;
  if (!p) {
    napi_get_null(env, &obj);
    return obj;
  }
  lvb_handle *h = malloc(sizeof *h);
  if (!h) {
    lvb_release_later(kind, p);
    napi_throw_error(env, NULL, "libvirt-binding: out of memory");
    return NULL;
  }
  h->kind = kind;
  h->ptr = p;
  napi_create_object(env, &obj);
  napi_property_descriptor d = {"type", NULL, NULL, NULL, NULL, lvb_str(env, lvb_kinds[kind].name), napi_enumerable, NULL};
  napi_define_properties(env, obj, 1, &d);
  napi_type_tag tag = tag_of(kind);
  napi_type_tag_object(env, obj, &tag);
  napi_wrap(env, obj, h, handle_finalize, NULL, NULL);
  return obj;
}

static lvb_handle *handle_of(napi_env env, napi_value v, int kind) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_object) return NULL;
  napi_type_tag tag = tag_of(kind);
  bool ok = false;
  napi_check_object_type_tag(env, v, &tag, &ok);
  if (!ok) return NULL;
  lvb_handle *h = NULL;
  napi_unwrap(env, v, (void **)&h);
  return h;
}

void *lvb_peek(napi_env env, napi_value v, int kind) {
  lvb_handle *h = handle_of(env, v, kind);
  return h ? h->ptr : NULL;
}

void *lvb_take(napi_env env, napi_value v, int kind) {
  lvb_handle *h = handle_of(env, v, kind);
  if (!h) return NULL;
  void *p = h->ptr;
  h->ptr = NULL;
  return p;
}

int lvb_arg_handle(napi_env env, napi_value v, int kind, void **out, const char *fname, const char *arg) {
  lvb_handle *h = handle_of(env, v, kind);
  char want[96];
  *out = NULL;
  if (!h) {
    snprintf(want, sizeof want, "a %s handle", lvb_kinds[kind].name);
    return type_error(env, fname, arg, want);
  }
  if (!h->ptr) {
    snprintf(want, sizeof want, "a %s handle that was not freed or closed", lvb_kinds[kind].name);
    return type_error(env, fname, arg, want);
  }
  /* the call's own reference: the JS object may be freed or collected while the call runs */
  lvb_kinds[kind].ref(h->ptr);
  *out = h->ptr;
  return 0;
}

/* ---------- errors ---------- */

void lvb_capture_error(lvb_call *c) {
  virErrorPtr e = virGetLastError();
  c->failed = 1;
  if (e) {
    c->err_code = e->code;
    c->err_domain = e->domain;
    c->err_level = e->level;
    c->err_message = lvb_strdup(e->message ? e->message : "unknown libvirt error");
  } else {
    c->err_code = VIR_ERR_INTERNAL_ERROR;
    c->err_domain = VIR_FROM_NONE;
    c->err_level = VIR_ERR_ERROR;
    c->err_message = lvb_strdup("the call failed without a libvirt error");
  }
  virResetLastError();
}

napi_value lvb_error(napi_env env, const char *fname, int code, int domain, int level, const char *message) {
  napi_value msg, err;
  napi_create_string_utf8(env, message ? message : "libvirt error", NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_set_named_property(env, err, "name", lvb_str(env, "LibvirtError"));
  napi_set_named_property(env, err, "code", lvb_num(env, code));
  napi_set_named_property(env, err, "domain", lvb_num(env, domain));
  napi_set_named_property(env, err, "level", lvb_num(env, level));
  napi_set_named_property(env, err, "func", lvb_str(env, fname));
  return err;
}

/* ---------- async calls ---------- */

static void call_execute(napi_env env, void *data) {
  (void)env;
  lvb_call *c = data;
  virResetLastError();
  lvb_event_loop_call(1);
  if (c->execute) c->execute(c);
  take_rides();
  lvb_event_loop_call(0);
}

static void call_complete(napi_env env, napi_status status, void *data) {
  lvb_call *c = data;
  napi_value v = NULL;
  if (status != napi_ok) {
    napi_reject_deferred(env, c->deferred, lvb_error(env, c->fname, VIR_ERR_INTERNAL_ERROR, VIR_FROM_NONE, VIR_ERR_ERROR, "call cancelled"));
  } else if (c->failed) {
    napi_reject_deferred(env, c->deferred, lvb_error(env, c->fname, c->err_code, c->err_domain, c->err_level, c->err_message));
  } else {
    if (c->result) v = c->result(env, c);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ex;
      napi_get_and_clear_last_exception(env, &ex);
      napi_reject_deferred(env, c->deferred, ex);
    } else {
      if (!v) napi_get_undefined(env, &v);
      napi_resolve_deferred(env, c->deferred, v);
    }
  }
  if (c->cleanup) c->cleanup(c);
  free(c->err_message);
  napi_delete_async_work(env, c->work);
  free(c);
}

napi_value lvb_queue(napi_env env, lvb_call *c) {
  napi_value promise, name;
  napi_create_promise(env, &c->deferred, &promise);
  napi_create_string_utf8(env, c->fname, NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, call_execute, call_complete, c, &c->work);
  napi_queue_async_work(env, c->work);
  return promise;
}

/* ---------- module ---------- */

void lvb_register_generated(napi_env env, napi_value exports);

/* Diagnostics for the tests (not in index.js): releases queued and not yet taken by a thread,
 * and how many times the reaper released something. */
static napi_value js_pending_releases(napi_env env, napi_callback_info info) {
  (void)info;
  long n = 0;
  pthread_mutex_lock(&reap_mu);
  for (reap_item *it = reap_head; it; it = it->next) n++;
  for (reap_item *it = ride_head; it; it = it->next) n++;
  pthread_mutex_unlock(&reap_mu);
  return lvb_num(env, (double)n);
}

static napi_value js_reaper_rounds(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&reap_mu);
  unsigned long n = reaper_rounds;
  pthread_mutex_unlock(&reap_mu);
  return lvb_num(env, (double)n);
}

/* Diagnostics for the tests: how many times the event loop has woken up. */
static napi_value js_event_loop_iterations(napi_env env, napi_callback_info info) {
  (void)info;
  return lvb_num(env, (double)lvb_event_loop_iterations());
}

static napi_value module_init(napi_env env, napi_value exports) {
  pthread_once(&global_once, global_init);
  if (!global_ok) {
    napi_throw_error(env, NULL, "libvirt-binding: cannot initialise libvirt or start its event loop");
    return NULL;
  }
  lvb_register_generated(env, exports);
  lvb_overrides_init(env, exports);
  napi_property_descriptor d[] = {
      {"_pendingReleases", NULL, js_pending_releases, NULL, NULL, NULL, napi_default, NULL},
      {"_reaperRounds", NULL, js_reaper_rounds, NULL, NULL, NULL, napi_default, NULL},
      {"_eventLoopIterations", NULL, js_event_loop_iterations, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
