/*
 * Shared machinery of the generated functions and the hand-written overrides: handles, argument
 * readers, libvirt errors, and the async-work call that keeps every libvirt call off the
 * JavaScript thread.
 */
#ifndef LVB_RUNTIME_H
#define LVB_RUNTIME_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdint.h>

/* Handle kinds, in the generator's HANDLES order (generated/functions.c defines the table). */
typedef struct {
  const char *name;         /* "virDomain" */
  int (*ref)(void *);       /* virDomainRef */
  int (*release)(void *);   /* virDomainFree */
} lvb_kind_t;
extern const lvb_kind_t lvb_kinds[];
extern const int lvb_nkinds;
enum { LVB_CONNECT = 0, LVB_DOMAIN = 1, LVB_NETWORK = 2, LVB_NETWORK_PORT = 3, LVB_SNAPSHOT = 4, LVB_CHECKPOINT = 5, LVB_STREAM = 6 };

/* One call in flight. Generated calls embed this as their first member. */
typedef struct lvb_call {
  napi_deferred deferred;
  napi_async_work work;
  const char *fname;
  /* set by execute on failure: libvirt's error, copied from the worker thread's last error */
  int failed;
  int err_code, err_domain, err_level;
  char *err_message;
  void (*execute)(struct lvb_call *);
  /* builds the resolved value on the JS thread; NULL: undefined */
  napi_value (*result)(napi_env, struct lvb_call *);
  /* frees what the call owns (strings, results not handed over); always runs */
  void (*cleanup)(struct lvb_call *);
} lvb_call;

/* Queues `c` (allocated with calloc by the caller) and returns its promise. */
napi_value lvb_queue(napi_env env, lvb_call *c);
/* Copies the calling thread's last libvirt error into `c` (worker thread). */
void lvb_capture_error(lvb_call *c);
/* A JS Error carrying code, domain, level and func. */
napi_value lvb_error(napi_env env, const char *fname, int code, int domain, int level, const char *message);

/* Argument readers: 0 on success; otherwise a TypeError is pending and the caller returns NULL. */
int lvb_arg_handle(napi_env env, napi_value v, int kind, void **out, const char *fname, const char *arg);
int lvb_arg_string(napi_env env, napi_value v, char **out, const char *fname, const char *arg);
int lvb_arg_i64(napi_env env, napi_value v, int64_t *out, const char *fname, const char *arg, int optional);
int lvb_arg_u64(napi_env env, napi_value v, uint64_t *out, const char *fname, const char *arg, int optional);

/* Drops one reference on a handle pointer (worker thread or reaper thread: may talk to libvirtd). */
void lvb_unref(int kind, void *p);
/* Hands a reference to the reaper thread (finalizers, explicit free): never blocks the caller. */
void lvb_release_later(int kind, void *p);
/* Wraps a pointer whose reference the new JS object owns. NULL -> null. */
napi_value lvb_wrap(napi_env env, int kind, void *p);
/* The wrapped pointer without taking a reference (NULL when freed or not a handle of `kind`). */
void *lvb_peek(napi_env env, napi_value v, int kind);
/* Takes the pointer out of the handle (it becomes unusable); the caller owns the reference. */
void *lvb_take(napi_env env, napi_value v, int kind);

napi_value lvb_num(napi_env env, double d);
napi_value lvb_str(napi_env env, const char *s);
char *lvb_strdup(const char *s);

/* eventloop.c: libvirt's event loop (virEventRegisterImpl) on a thread of its own */
int lvb_event_loop_start(void);
void lvb_event_loop_call(int begin);
unsigned long lvb_event_loop_iterations(void);

/* overrides.c */
void lvb_overrides_init(napi_env env, napi_value exports);

#endif
