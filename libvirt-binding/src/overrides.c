/*
 * Hand-written functions (the generator lists them as overrides): explicit release of handles,
 * connection close, and the callbacks libvirt's event-loop thread calls (domain lifecycle events,
 * connection close), delivered to JavaScript through threadsafe functions.
 */
#include "runtime.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---------- handle release ---------- */

static napi_value js_free(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  napi_get_cb_info(env, info, &argc, argv, NULL, &data);
  int kind = (int)(intptr_t)data;
  /* freeing twice, or anything that is not a live handle of this kind, does nothing */
  if (argc >= 1) lvb_release_later(kind, lvb_take(env, argv[0], kind));
  return NULL;
}

typedef struct {
  lvb_call base;
  void *conn;  /* the call's reference */
  void *owned; /* the handle's own reference, taken from it */
  int ret;
} close_call;

/* Both references dropped on this thread, in this order: what it resolves with (the references
 * left, 0 when this closed the connection) no longer depends on another thread's timing. */
static void close_execute(lvb_call *b) {
  close_call *c = (close_call *)b;
  if (c->owned) virConnectClose((virConnectPtr)c->owned);
  c->ret = virConnectClose((virConnectPtr)c->conn);
  if (c->ret < 0) lvb_capture_error(b);
}

static napi_value close_result(napi_env env, lvb_call *b) {
  return lvb_num(env, ((close_call *)b)->ret);
}

static napi_value js_connect_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *conn = NULL;
  /* checks the argument and takes the call's reference */
  if (lvb_arg_handle(env, argv[0], LVB_CONNECT, &conn, "virConnectClose", "conn")) return NULL;
  close_call *c = calloc(1, sizeof *c);
  if (!c) {
    lvb_release_later(LVB_CONNECT, conn);
    napi_throw_error(env, NULL, "virConnectClose: out of memory");
    return NULL;
  }
  /* the handle is unusable from here on: its own reference goes with the call */
  c->owned = lvb_take(env, argv[0], LVB_CONNECT);
  c->base.fname = "virConnectClose";
  c->base.execute = close_execute;
  c->base.result = close_result;
  c->conn = conn; /* the call's reference: virConnectClose drops it */
  return lvb_queue(env, &c->base);
}

/* ---------- threadsafe callbacks ---------- */

/*
 * A JavaScript callback that libvirt's threads call through a threadsafe function.
 *
 * Node frees a threadsafe function when its environment ends (the process exits, a worker ends)
 * even while threads still hold it, and calls its finalizer: libvirt may still hold the
 * registration then and call back, or free it, from its event-loop or reaper thread. So every use
 * of `tsfn` happens under `mu` and stops once the finalizer has cleared it. The struct has two
 * owners, libvirt's registration (cb_reg_free) and Node's threadsafe function (its finalizer);
 * the last one to let go frees it.
 */
typedef struct {
  pthread_mutex_t mu;
  napi_threadsafe_function tsfn; /* NULL once Node has finalized it */
  int released;                  /* the registration let go of tsfn */
  int owners;
} cb_reg;

static void cb_reg_drop(cb_reg *r) {
  /* called with r->mu held; unlocks it */
  int last = --r->owners == 0;
  pthread_mutex_unlock(&r->mu);
  if (last) {
    pthread_mutex_destroy(&r->mu);
    free(r);
  }
}

/* JavaScript thread: Node is done with the threadsafe function (released, or its env ended) */
static void cb_reg_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  cb_reg *r = data;
  pthread_mutex_lock(&r->mu);
  r->tsfn = NULL;
  cb_reg_drop(r);
}

static cb_reg *cb_reg_new(napi_env env, napi_value fn, const char *name, napi_threadsafe_function_call_js call_js) {
  cb_reg *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  r->owners = 2;
  napi_value res;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &res);
  if (napi_create_threadsafe_function(env, fn, NULL, res, 0, 1, r, cb_reg_finalize, NULL, call_js, &r->tsfn) != napi_ok) {
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  /* a registration does not keep the process alive: the owner of the connection does */
  napi_unref_threadsafe_function(env, r->tsfn);
  return r;
}

/* Any thread: queues `data` for the JavaScript callback. -1: not queued (the caller frees data). */
static int cb_reg_send(cb_reg *r, void *data) {
  pthread_mutex_lock(&r->mu);
  /* nonblocking with an unbounded queue: never waits for the JavaScript thread while holding mu */
  int ok = r->tsfn && !r->released && napi_call_threadsafe_function(r->tsfn, data, napi_tsfn_nonblocking) == napi_ok;
  pthread_mutex_unlock(&r->mu);
  return ok ? 0 : -1;
}

/* libvirt's free callback of the registration (any libvirt thread), or a failed registration */
static void cb_reg_free(void *opaque) {
  cb_reg *r = opaque;
  pthread_mutex_lock(&r->mu);
  if (r->tsfn && !r->released) napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  r->released = 1;
  cb_reg_drop(r);
}

static int is_function(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_function;
}

/* ---------- domain lifecycle events ---------- */

typedef struct {
  char *name;
  char uuid[VIR_UUID_STRING_BUFLEN];
  int event, detail;
} lifecycle_msg;

static void lifecycle_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  lifecycle_msg *m = data;
  if (env && fn) {
    napi_value obj, undef;
    napi_create_object(env, &obj);
    napi_set_named_property(env, obj, "name", lvb_str(env, m->name));
    napi_set_named_property(env, obj, "uuid", lvb_str(env, m->uuid));
    napi_set_named_property(env, obj, "event", lvb_num(env, m->event));
    napi_set_named_property(env, obj, "detail", lvb_num(env, m->detail));
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, fn, 1, &obj, NULL);
  }
  free(m->name);
  free(m);
}

/* libvirt's event-loop thread */
static int lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
  (void)conn;
  cb_reg *r = opaque;
  lifecycle_msg *m = calloc(1, sizeof *m);
  if (!m) return 0;
  m->name = lvb_strdup(virDomainGetName(dom));
  if (virDomainGetUUIDString(dom, m->uuid) < 0) m->uuid[0] = 0;
  m->event = event;
  m->detail = detail;
  if (cb_reg_send(r, m) < 0) {
    free(m->name);
    free(m);
  }
  return 0;
}

/* The calls that register or drop a callback on a connection: one shape, one libvirt call each. */
typedef struct register_call register_call;
struct register_call {
  lvb_call base;
  int (*op)(register_call *); /* the libvirt call */
  void *conn, *dom;           /* the call's references (dom may be NULL) */
  int event_id;
  int ret;
  cb_reg *reg; /* a registration's callback: libvirt's once the call succeeds */
};

static void conn_call_execute(lvb_call *b) {
  register_call *c = (register_call *)b;
  c->ret = c->op(c);
  if (c->ret < 0) {
    lvb_capture_error(b);
    if (c->reg) cb_reg_free(c->reg); /* libvirt does not call the free callback of a failed registration */
  }
  c->reg = NULL;
  lvb_unref(LVB_DOMAIN, c->dom);
  lvb_unref(LVB_CONNECT, c->conn);
}

static napi_value int_result(napi_env env, lvb_call *b) {
  return lvb_num(env, ((register_call *)b)->ret);
}

/*
 * Queues `op` on `conn` (and `dom`): the call's references, given back here when it cannot be
 * queued. With `fn`, the JavaScript callback a registration hands to libvirt (`what` names it).
 */
static napi_value queue_conn_call(napi_env env, const char *F, int (*op)(register_call *), void *conn, void *dom, int event_id,
                                  napi_value fn, const char *what, napi_threadsafe_function_call_js call_js) {
  register_call *c = calloc(1, sizeof *c);
  if (c && fn) c->reg = cb_reg_new(env, fn, what, call_js);
  if (!c || (fn && !c->reg)) {
    free(c);
    lvb_release_later(LVB_CONNECT, conn);
    lvb_release_later(LVB_DOMAIN, dom);
    char msg[128];
    snprintf(msg, sizeof msg, "%s: %s", F, fn ? "cannot create the callback" : "out of memory");
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  c->base.fname = F;
  c->base.execute = conn_call_execute;
  c->base.result = int_result;
  c->op = op;
  c->conn = conn;
  c->dom = dom;
  c->event_id = event_id;
  return lvb_queue(env, &c->base);
}

static int op_register(register_call *c) {
  return virConnectDomainEventRegisterAny((virConnectPtr)c->conn, (virDomainPtr)c->dom, c->event_id,
                                          VIR_DOMAIN_EVENT_CALLBACK(lifecycle_cb), c->reg, cb_reg_free);
}

static int op_deregister(register_call *c) {
  return virConnectDomainEventDeregisterAny((virConnectPtr)c->conn, c->event_id);
}

static napi_value js_event_register(napi_env env, napi_callback_info info) {
  static const char F[] = "virConnectDomainEventRegisterAny";
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t id;
  void *conn = NULL, *dom = NULL;
  napi_valuetype t;
  if (lvb_arg_i64(env, argv[2], &id, F, "eventID", 0)) return NULL;
  if (id != VIR_DOMAIN_EVENT_ID_LIFECYCLE) {
    napi_throw_range_error(env, NULL, "virConnectDomainEventRegisterAny: only VIR_DOMAIN_EVENT_ID_LIFECYCLE is supported");
    return NULL;
  }
  if (!is_function(env, argv[3])) {
    napi_throw_type_error(env, NULL, "virConnectDomainEventRegisterAny: callback must be a function");
    return NULL;
  }
  if (lvb_arg_handle(env, argv[0], LVB_CONNECT, &conn, F, "conn")) return NULL;
  napi_typeof(env, argv[1], &t);
  if (t != napi_null && t != napi_undefined && lvb_arg_handle(env, argv[1], LVB_DOMAIN, &dom, F, "dom")) {
    lvb_release_later(LVB_CONNECT, conn);
    return NULL;
  }
  return queue_conn_call(env, F, op_register, conn, dom, (int)id, argv[3], "libvirt lifecycle event", lifecycle_js);
}

static napi_value js_event_deregister(napi_env env, napi_callback_info info) {
  static const char F[] = "virConnectDomainEventDeregisterAny";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t id;
  void *conn = NULL;
  if (lvb_arg_i64(env, argv[1], &id, F, "callbackID", 0)) return NULL;
  if (lvb_arg_handle(env, argv[0], LVB_CONNECT, &conn, F, "conn")) return NULL;
  return queue_conn_call(env, F, op_deregister, conn, NULL, (int)id, NULL, NULL, NULL);
}

/* ---------- connection close callback ---------- */

static void close_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  int reason = (int)(intptr_t)data;
  if (env && fn) {
    napi_value arg = lvb_num(env, reason), undef;
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, fn, 1, &arg, NULL);
  }
}

static void close_cb(virConnectPtr conn, int reason, void *opaque) {
  (void)conn;
  cb_reg_send(opaque, (void *)(intptr_t)reason);
}

static int op_close_register(register_call *c) {
  return virConnectRegisterCloseCallback((virConnectPtr)c->conn, close_cb, c->reg, cb_reg_free);
}

static int op_close_unregister(register_call *c) {
  return virConnectUnregisterCloseCallback((virConnectPtr)c->conn, close_cb);
}

static napi_value js_close_register(napi_env env, napi_callback_info info) {
  static const char F[] = "virConnectRegisterCloseCallback";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *conn = NULL;
  if (!is_function(env, argv[1])) {
    napi_throw_type_error(env, NULL, "virConnectRegisterCloseCallback: callback must be a function");
    return NULL;
  }
  if (lvb_arg_handle(env, argv[0], LVB_CONNECT, &conn, F, "conn")) return NULL;
  return queue_conn_call(env, F, op_close_register, conn, NULL, 0, argv[1], "libvirt close callback", close_js);
}

static napi_value js_close_unregister(napi_env env, napi_callback_info info) {
  static const char F[] = "virConnectUnregisterCloseCallback";
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *conn = NULL;
  if (lvb_arg_handle(env, argv[0], LVB_CONNECT, &conn, F, "conn")) return NULL;
  return queue_conn_call(env, F, op_close_unregister, conn, NULL, 0, NULL, NULL, NULL);
}


/* ---------- typed parameters (memory, blkio, NUMA, scheduler): get and set ---------- */

typedef int (*tp_get_fn)(virDomainPtr, virTypedParameterPtr, int *, unsigned int);
typedef int (*tp_set_fn)(virDomainPtr, virTypedParameterPtr, int, unsigned int);

static int sched_get(virDomainPtr d, virTypedParameterPtr p, int *n, unsigned int f) {
  return virDomainGetSchedulerParametersFlags(d, p, n, f);
}
static int sched_set(virDomainPtr d, virTypedParameterPtr p, int n, unsigned int f) {
  return virDomainSetSchedulerParametersFlags(d, p, n, f);
}

typedef struct {
  const char *get_name, *set_name;
  tp_get_fn get;
  tp_set_fn set;
  int scheduler; /* the count comes from virDomainGetSchedulerType, not from a NULL call */
} tp_family;

static const tp_family tp_families[] = {
    {"virDomainGetMemoryParameters", "virDomainSetMemoryParameters", virDomainGetMemoryParameters, virDomainSetMemoryParameters, 0},
    {"virDomainGetBlkioParameters", "virDomainSetBlkioParameters", virDomainGetBlkioParameters, virDomainSetBlkioParameters, 0},
    {"virDomainGetNumaParameters", "virDomainSetNumaParameters", virDomainGetNumaParameters, virDomainSetNumaParameters, 0},
    {"virDomainGetSchedulerParametersFlags", "virDomainSetSchedulerParametersFlags", sched_get, sched_set, 1},
};

typedef struct {
  char *name;
  napi_valuetype kind; /* number, bigint, boolean or string */
  double num;
  int64_t i64;
  uint64_t u64;
  int big_signed;
  int boolean;
  char *str;
} tp_value;

typedef struct {
  lvb_call base;
  const tp_family *fam;
  void *dom;
  unsigned int flags;
  virTypedParameterPtr params;
  int nparams;
  tp_value *in;
  int nin;
} tp_call;

static void tp_fail(lvb_call *b, int code, const char *msg) {
  b->failed = 1;
  b->err_code = code;
  b->err_domain = VIR_FROM_NONE;
  b->err_level = VIR_ERR_ERROR;
  b->err_message = lvb_strdup(msg);
}

/* The current parameters (their names and types) into c->params / c->nparams. */
static int tp_fetch(tp_call *c, unsigned int flags) {
  virDomainPtr dom = (virDomainPtr)c->dom;
  int n = 0;
  flags |= VIR_TYPED_PARAM_STRING_OKAY;
  if (c->fam->scheduler) {
    char *type = virDomainGetSchedulerType(dom, &n);
    if (!type) return -1;
    free(type);
  } else if (c->fam->get(dom, NULL, &n, flags) < 0) {
    return -1;
  }
  c->params = calloc(n > 0 ? (size_t)n : 1, sizeof *c->params);
  if (!c->params) return -1;
  c->nparams = n;
  if (n > 0 && c->fam->get(dom, c->params, &c->nparams, flags) < 0) return -1;
  return 0;
}

static void tp_get_execute(lvb_call *b) {
  tp_call *c = (tp_call *)b;
  if (tp_fetch(c, c->flags) < 0) lvb_capture_error(b);
  lvb_unref(LVB_DOMAIN, c->dom);
}

static napi_value tp_get_result(napi_env env, lvb_call *b) {
  tp_call *c = (tp_call *)b;
  napi_value obj, v;
  napi_create_object(env, &obj);
  for (int i = 0; i < c->nparams; i++) {
    virTypedParameterPtr p = &c->params[i];
    switch (p->type) {
      case VIR_TYPED_PARAM_INT: v = lvb_num(env, p->value.i); break;
      case VIR_TYPED_PARAM_UINT: v = lvb_num(env, p->value.ui); break;
      case VIR_TYPED_PARAM_LLONG: v = lvb_num(env, (double)p->value.l); break;
      case VIR_TYPED_PARAM_ULLONG: v = lvb_num(env, (double)p->value.ul); break;
      case VIR_TYPED_PARAM_DOUBLE: v = lvb_num(env, p->value.d); break;
      case VIR_TYPED_PARAM_BOOLEAN: napi_get_boolean(env, p->value.b, &v); break;
      case VIR_TYPED_PARAM_STRING: v = lvb_str(env, p->value.s); break;
      default: continue;
    }
    napi_set_named_property(env, obj, p->field, v);
  }
  return obj;
}

static void tp_cleanup(lvb_call *b) {
  tp_call *c = (tp_call *)b;
  if (c->params) virTypedParamsFree(c->params, c->nparams);
  for (int i = 0; i < c->nin; i++) {
    free(c->in[i].name);
    free(c->in[i].str);
  }
  free(c->in);
}

/* One given value as the type libvirt has for that parameter. */
static int tp_add(virTypedParameterPtr *list, int *n, int *max, int type, const tp_value *v, char *err, size_t errlen) {
  double num = v->kind == napi_number ? v->num : v->kind == napi_bigint ? (v->big_signed ? (double)v->i64 : (double)v->u64) : 0;
  /* no cast of a double before its range is known: out of range (or NaN) it is undefined in C */
  int integral = v->kind == napi_bigint || (v->kind == napi_number && isfinite(num) && num == trunc(num));
  switch (type) {
    case VIR_TYPED_PARAM_INT:
      if (!integral || num < INT32_MIN || num > INT32_MAX) break;
      return virTypedParamsAddInt(list, n, max, v->name, (int)num);
    case VIR_TYPED_PARAM_UINT:
      if (!integral || num < 0 || num > UINT32_MAX) break;
      return virTypedParamsAddUInt(list, n, max, v->name, (unsigned int)num);
    case VIR_TYPED_PARAM_LLONG:
      if (v->kind == napi_bigint) {
        if (!v->big_signed && v->u64 > INT64_MAX) break;
        return virTypedParamsAddLLong(list, n, max, v->name, v->big_signed ? v->i64 : (long long)v->u64);
      }
      if (!integral || num < -0x1p63 || num >= 0x1p63) break;
      return virTypedParamsAddLLong(list, n, max, v->name, (long long)num);
    case VIR_TYPED_PARAM_ULLONG:
      if (v->kind == napi_bigint) {
        if (v->big_signed) break;
        return virTypedParamsAddULLong(list, n, max, v->name, v->u64);
      }
      if (!integral || num < 0 || num >= 0x1p64) break;
      return virTypedParamsAddULLong(list, n, max, v->name, (unsigned long long)num);
    case VIR_TYPED_PARAM_DOUBLE:
      if (v->kind != napi_number && v->kind != napi_bigint) break;
      return virTypedParamsAddDouble(list, n, max, v->name, num);
    case VIR_TYPED_PARAM_BOOLEAN:
      if (v->kind != napi_boolean) break;
      return virTypedParamsAddBoolean(list, n, max, v->name, v->boolean);
    case VIR_TYPED_PARAM_STRING:
      if (v->kind != napi_string) break;
      return virTypedParamsAddString(list, n, max, v->name, v->str);
  }
  snprintf(err, errlen, "parameter %s: value does not fit its type (virTypedParameterType %d)", v->name, type);
  return -2;
}

static void tp_set_execute(lvb_call *b) {
  tp_call *c = (tp_call *)b;
  virTypedParameterPtr list = NULL;
  int n = 0, max = 0;
  char err[256];
  /* the types come from the current parameters, as libvirt checks them strictly */
  unsigned int scope = c->flags & VIR_DOMAIN_AFFECT_CONFIG ? VIR_DOMAIN_AFFECT_CONFIG : c->flags & VIR_DOMAIN_AFFECT_LIVE;
  if (tp_fetch(c, scope) < 0) {
    lvb_capture_error(b);
    goto out;
  }
  for (int i = 0; i < c->nin; i++) {
    virTypedParameterPtr cur = virTypedParamsGet(c->params, c->nparams, c->in[i].name);
    if (!cur) {
      snprintf(err, sizeof err, "%s: unknown parameter %s", c->fam->set_name, c->in[i].name);
      tp_fail(b, VIR_ERR_INVALID_ARG, err);
      goto out;
    }
    int r = tp_add(&list, &n, &max, cur->type, &c->in[i], err, sizeof err);
    if (r == -2) {
      tp_fail(b, VIR_ERR_INVALID_ARG, err);
      goto out;
    }
    if (r < 0) {
      lvb_capture_error(b);
      goto out;
    }
  }
  if (c->fam->set((virDomainPtr)c->dom, list, n, c->flags) < 0) lvb_capture_error(b);
out:
  virTypedParamsFree(list, n);
  lvb_unref(LVB_DOMAIN, c->dom);
}

static napi_value js_tp_get(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *data;
  napi_get_cb_info(env, info, &argc, argv, NULL, &data);
  const tp_family *fam = data;
  uint64_t flags;
  void *dom;
  if (lvb_arg_u64(env, argv[1], &flags, fam->get_name, "flags", 1)) return NULL;
  if (lvb_arg_handle(env, argv[0], LVB_DOMAIN, &dom, fam->get_name, "domain")) return NULL;
  tp_call *c = calloc(1, sizeof *c);
  c->base.fname = fam->get_name;
  c->base.execute = tp_get_execute;
  c->base.result = tp_get_result;
  c->base.cleanup = tp_cleanup;
  c->fam = fam;
  c->dom = dom;
  c->flags = (unsigned int)flags;
  return lvb_queue(env, &c->base);
}

static napi_value js_tp_set(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  void *data;
  napi_get_cb_info(env, info, &argc, argv, NULL, &data);
  const tp_family *fam = data;
  const char *F = fam->set_name;
  uint64_t flags;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_object) {
    napi_throw_type_error(env, NULL, "typed parameters must be an object of name: value");
    return NULL;
  }
  if (lvb_arg_u64(env, argv[2], &flags, F, "flags", 1)) return NULL;
  napi_value keys;
  uint32_t nkeys;
  napi_get_property_names(env, argv[1], &keys);
  napi_get_array_length(env, keys, &nkeys);
  tp_call *c = calloc(1, sizeof *c);
  c->in = calloc(nkeys ? nkeys : 1, sizeof *c->in);
  c->base.fname = F;
  c->base.execute = tp_set_execute;
  c->base.cleanup = tp_cleanup;
  c->fam = fam;
  c->flags = (unsigned int)flags;
  for (uint32_t i = 0; i < nkeys; i++) {
    napi_value k, v;
    napi_get_element(env, keys, i, &k);
    napi_get_property(env, argv[1], k, &v);
    tp_value *tv = &c->in[c->nin++];
    if (lvb_arg_string(env, k, &tv->name, F, "parameter name")) goto fail;
    napi_typeof(env, v, &tv->kind);
    if (tv->kind == napi_number) {
      napi_get_value_double(env, v, &tv->num);
    } else if (tv->kind == napi_bigint) {
      /* one of the two readings is exact for any 64-bit value; neither is for a wider one */
      bool exact_signed, exact_unsigned;
      napi_get_value_bigint_int64(env, v, &tv->i64, &exact_signed);
      napi_get_value_bigint_uint64(env, v, &tv->u64, &exact_unsigned);
      if (!exact_signed && !exact_unsigned) {
        napi_throw_range_error(env, NULL, "a typed parameter bigint must be a 64-bit integer");
        goto fail;
      }
      tv->big_signed = exact_signed && tv->i64 < 0;
    } else if (tv->kind == napi_boolean) {
      bool b;
      napi_get_value_bool(env, v, &b);
      tv->boolean = b;
    } else if (tv->kind == napi_string) {
      if (lvb_arg_string(env, v, &tv->str, F, tv->name)) goto fail;
    } else {
      napi_throw_type_error(env, NULL, "a typed parameter value must be a number, bigint, boolean or string");
      goto fail;
    }
  }
  if (lvb_arg_handle(env, argv[0], LVB_DOMAIN, &c->dom, F, "domain")) goto fail;
  return lvb_queue(env, &c->base);
fail:
  tp_cleanup(&c->base);
  free(c);
  return NULL;
}


/* ---------- console stream (virDomainOpenConsole on a non-blocking virStream) ---------- */

enum { CONSOLE_DATA, CONSOLE_END, CONSOLE_ERROR };

typedef struct {
  cb_reg *cb;
  int done; /* only touched on libvirt's event-loop thread */
} console_reg;

typedef struct {
  int kind;
  char *buf;
  size_t len;
  int code, domain;
  char *message;
} console_msg;

static void console_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)context;
  console_msg *m = data;
  if (env && fn) {
    napi_value args[2], undef;
    napi_get_undefined(env, &undef);
    napi_get_null(env, &args[0]);
    napi_get_null(env, &args[1]);
    if (m->kind == CONSOLE_DATA) {
      napi_create_buffer_copy(env, m->len, m->buf, NULL, &args[1]);
    } else if (m->kind == CONSOLE_ERROR) {
      args[0] = lvb_error(env, "virStreamRecv", m->code, m->domain, VIR_ERR_ERROR, m->message);
    }
    napi_call_function(env, undef, fn, 2, args, NULL);
  }
  free(m->buf);
  free(m->message);
  free(m);
}

static void console_send(console_reg *r, console_msg *m) {
  if (cb_reg_send(r->cb, m) < 0) {
    free(m->buf);
    free(m->message);
    free(m);
  }
}

static void console_free(void *opaque) {
  console_reg *r = opaque;
  cb_reg_free(r->cb);
  free(r);
}

/* libvirt's event-loop thread: the stream is readable (or hung up) */
static void console_cb(virStreamPtr st, int events, void *opaque) {
  console_reg *r = opaque;
  char buf[16384];
  while (!r->done) {
    int n = virStreamRecv(st, buf, sizeof buf);
    if (n == -2) break; /* nothing more for now */
    console_msg *m = calloc(1, sizeof *m);
    if (!m) break;
    if (n > 0) {
      m->kind = CONSOLE_DATA;
      m->buf = malloc((size_t)n);
      if (m->buf) memcpy(m->buf, buf, (size_t)n);
      m->len = m->buf ? (size_t)n : 0;
      console_send(r, m);
      continue;
    }
    if (n == 0) {
      m->kind = CONSOLE_END;
    } else {
      virErrorPtr e = virGetLastError();
      m->kind = CONSOLE_ERROR;
      m->code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
      m->domain = e ? e->domain : VIR_FROM_STREAMS;
      m->message = lvb_strdup(e && e->message ? e->message : "console stream failed");
    }
    r->done = 1;
    console_send(r, m);
  }
  if (!r->done && (events & (VIR_STREAM_EVENT_HANGUP | VIR_STREAM_EVENT_ERROR))) {
    console_msg *m = calloc(1, sizeof *m);
    r->done = 1;
    if (m) {
      m->kind = CONSOLE_END;
      console_send(r, m);
    }
  }
  if (r->done) virStreamEventRemoveCallback(st);
}

typedef struct {
  lvb_call base;
  void *dom;
  char *devname;
  unsigned int flags;
  console_reg *reg;
  virStreamPtr st;
} console_call;

static void console_execute(lvb_call *b) {
  console_call *c = (console_call *)b;
  virDomainPtr dom = (virDomainPtr)c->dom;
  c->st = virStreamNew(virDomainGetConnect(dom), VIR_STREAM_NONBLOCK);
  if (!c->st) {
    lvb_capture_error(b);
  } else if (virDomainOpenConsole(dom, c->devname, c->st, c->flags) < 0) {
    lvb_capture_error(b);
  } else if (virStreamEventAddCallback(c->st, VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
                                       console_cb, c->reg, console_free) < 0) {
    lvb_capture_error(b);
    virStreamAbort(c->st);
  } else {
    c->reg = NULL; /* libvirt owns it now: console_free releases it */
  }
  if (b->failed && c->st) {
    virStreamFree(c->st);
    c->st = NULL;
  }
  if (c->reg) {
    console_free(c->reg);
    c->reg = NULL;
  }
  lvb_unref(LVB_DOMAIN, c->dom);
}

static napi_value console_result(napi_env env, lvb_call *b) {
  console_call *c = (console_call *)b;
  napi_value v = lvb_wrap(env, LVB_STREAM, c->st);
  c->st = NULL;
  return v;
}

static void console_cleanup(lvb_call *b) {
  console_call *c = (console_call *)b;
  free(c->devname);
  if (c->st) lvb_release_later(LVB_STREAM, c->st);
}

static napi_value js_open_console(napi_env env, napi_callback_info info) {
  static const char F[] = "virDomainOpenConsoleStream";
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint64_t flags;
  if (lvb_arg_u64(env, argv[2], &flags, F, "flags", 1)) return NULL;
  if (!is_function(env, argv[3])) {
    napi_throw_type_error(env, NULL, "virDomainOpenConsoleStream: callback must be a function");
    return NULL;
  }
  console_call *c = calloc(1, sizeof *c);
  c->base.fname = F;
  c->base.execute = console_execute;
  c->base.result = console_result;
  c->base.cleanup = console_cleanup;
  c->flags = (unsigned int)flags;
  if (lvb_arg_string(env, argv[1], &c->devname, F, "devname")) {
    free(c);
    return NULL;
  }
  c->reg = calloc(1, sizeof *c->reg);
  if (c->reg) c->reg->cb = cb_reg_new(env, argv[3], "libvirt console", console_js);
  if (!c->reg || !c->reg->cb) {
    free(c->reg);
    free(c->devname);
    free(c);
    napi_throw_error(env, NULL, "virDomainOpenConsoleStream: cannot create the callback");
    return NULL;
  }
  if (lvb_arg_handle(env, argv[0], LVB_DOMAIN, &c->dom, F, "domain")) {
    console_free(c->reg);
    free(c->devname);
    free(c);
    return NULL;
  }
  return lvb_queue(env, &c->base);
}

typedef struct {
  lvb_call base;
  void *st;
} stream_close_call;

static void stream_close_execute(lvb_call *b) {
  stream_close_call *c = (stream_close_call *)b;
  virStreamPtr st = (virStreamPtr)c->st;
  /* fails harmlessly when the stream ended and removed its callback already */
  virStreamEventRemoveCallback(st);
  virStreamAbort(st);
  virResetLastError();
  virStreamFree(st);
}

static napi_value js_stream_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *st = argc >= 1 ? lvb_take(env, argv[0], LVB_STREAM) : NULL;
  stream_close_call *c = calloc(1, sizeof *c);
  c->base.fname = "virStreamClose";
  c->base.execute = st ? stream_close_execute : NULL;
  c->st = st;
  if (!st) {
    /* closed already: nothing to do */
    c->base.execute = NULL;
  }
  return lvb_queue(env, &c->base);
}

void lvb_overrides_init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"virDomainFree", NULL, js_free, NULL, NULL, NULL, napi_enumerable, (void *)(intptr_t)LVB_DOMAIN},
      {"virNetworkFree", NULL, js_free, NULL, NULL, NULL, napi_enumerable, (void *)(intptr_t)LVB_NETWORK},
      {"virNetworkPortFree", NULL, js_free, NULL, NULL, NULL, napi_enumerable, (void *)(intptr_t)LVB_NETWORK_PORT},
      {"virDomainSnapshotFree", NULL, js_free, NULL, NULL, NULL, napi_enumerable, (void *)(intptr_t)LVB_SNAPSHOT},
      {"virDomainCheckpointFree", NULL, js_free, NULL, NULL, NULL, napi_enumerable, (void *)(intptr_t)LVB_CHECKPOINT},
      {"virConnectClose", NULL, js_connect_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virConnectDomainEventRegisterAny", NULL, js_event_register, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virConnectDomainEventDeregisterAny", NULL, js_event_deregister, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virConnectRegisterCloseCallback", NULL, js_close_register, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virConnectUnregisterCloseCallback", NULL, js_close_unregister, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virDomainOpenConsoleStream", NULL, js_open_console, NULL, NULL, NULL, napi_enumerable, NULL},
      {"virStreamClose", NULL, js_stream_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  for (size_t i = 0; i < sizeof tp_families / sizeof tp_families[0]; i++) {
    const napi_property_descriptor tp[] = {
        {tp_families[i].get_name, NULL, js_tp_get, NULL, NULL, NULL, napi_enumerable, (void *)&tp_families[i]},
        {tp_families[i].set_name, NULL, js_tp_set, NULL, NULL, NULL, napi_enumerable, (void *)&tp_families[i]},
    };
    napi_define_properties(env, exports, 2, tp);
  }
}
