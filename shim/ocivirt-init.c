/*
 * ocivirt-init: the container init shim (issue 12).
 *
 * Started as the container's PID 1 with one argument, the path of a spec file (format in
 * shim/README.md). It applies what libvirt-lxc cannot (sysctls, rlimits, oom_score_adj, umask,
 * supplementary groups, no_new_privs, a seccomp filter, an exact environment), then runs the
 * configured process and stays PID 1: it forwards signals to that process, reaps every child,
 * and when the process ends it records the status (and the last signal sent to it from outside the
 * container) and exits with it.
 *
 * If any step fails, the process is NOT run: the shim prints "ocivirt-init: <step>: <reason>"
 * on stderr, records "setup-failed" and exits 125 (127 / 126 when the program cannot be found /
 * executed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "log.h"

#define SPEC_MAX (4u << 20)   /* a spec file larger than 4 MiB is refused */
#define LIST_MAX 65536        /* args, env entries, groups, sysctls, seccomp rules: each at most this many */
#define EXIT_SETUP 125
#define EXIT_NOEXEC 126
#define EXIT_NOTFOUND 127

/* ---------- messages ---------- */

static void msg(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, "ocivirt-init: ", 14);
  w = write(STDERR_FILENO, buf, (size_t)n);
  (void)w;
}

_Noreturn static void die(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  msg("%s", buf);
  _exit(EXIT_SETUP);
}

/* ---------- spec ---------- */

struct rlim { int resource; rlim_t soft, hard; };
struct sysctl { const char *key, *value; };
struct scmp_cond { unsigned index; enum scmp_compare op; uint64_t a, b; };
struct scmp_rule { const char *name; uint32_t action; unsigned nargs; struct scmp_cond args[6]; };

struct spec {
  const char **argv; size_t argc;
  const char **envp; size_t envc;
  const char *cwd;
  bool have_user; uid_t uid; gid_t gid;
  gid_t *groups; size_t ngroups;
  bool have_umask; mode_t umask;
  struct rlim *rlimits; size_t nrlimits;
  bool have_oom; int oom;
  bool nnp;
  bool caps; uint64_t cap_bnd, cap_eff, cap_prm, cap_inh, cap_amb;
  struct sysctl *sysctls; size_t nsysctls;
  bool seccomp; uint32_t scmp_default;
  const char **scmp_arches; size_t narches;
  bool flag_log, flag_ssb, flag_tsync;
  struct scmp_rule *rules; size_t nrules;
  const char *status_path;
  const char *log_dir; uint64_t log_bytes;
};

struct reader { const char *p, *end; };

/* The next NUL-terminated token, or die: the file must end exactly after the `end` record. */
static const char *tok(struct reader *r, const char *what) {
  if (r->p >= r->end) die("spec: truncated (expected %s)", what);
  const char *t = r->p;
  const char *z = memchr(t, '\0', (size_t)(r->end - t));
  if (!z) die("spec: truncated (%s has no terminating NUL)", what);
  r->p = z + 1;
  return t;
}

/* Strict unsigned decimal: digits only, no sign, no leading zero (except "0"), within max. */
static uint64_t parse_u64(const char *s, uint64_t max, const char *what) {
  if (!*s) die("spec: %s: empty number", what);
  if (s[0] == '0' && s[1]) die("spec: %s: leading zero in \"%.40s\"", what, s);
  uint64_t v = 0;
  for (const char *c = s; *c; c++) {
    if (*c < '0' || *c > '9') die("spec: %s: not a decimal number: \"%.40s\"", what, s);
    unsigned d = (unsigned)(*c - '0');
    if (v > (UINT64_MAX - d) / 10) die("spec: %s: out of range: \"%.40s\"", what, s);
    v = v * 10 + d;
  }
  if (v > max) die("spec: %s: out of range: \"%.40s\"", what, s);
  return v;
}

static int64_t parse_i64(const char *s, int64_t min, int64_t max, const char *what) {
  bool neg = s[0] == '-';
  uint64_t m = parse_u64(neg ? s + 1 : s, (uint64_t)INT64_MAX, what);
  if (neg && m == 0) die("spec: %s: \"-0\"", what);
  int64_t v = neg ? -(int64_t)m : (int64_t)m;
  if (v < min || v > max) die("spec: %s: out of range: \"%.40s\"", what, s);
  return v;
}

static void *grow(void *arr, size_t *n, size_t size, const char *what) {
  if (*n >= LIST_MAX) die("spec: too many %s records", what);
  void *p = realloc(arr, (*n + 1) * size);
  if (!p) die("out of memory");
  (*n)++;
  return p;
}

static const struct { const char *name; int res; } rlimit_names[] = {
  {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_CPU", RLIMIT_CPU},
  {"RLIMIT_DATA", RLIMIT_DATA}, {"RLIMIT_FSIZE", RLIMIT_FSIZE}, {"RLIMIT_LOCKS", RLIMIT_LOCKS},
  {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
  {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_RSS", RLIMIT_RSS},
  {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
  {"RLIMIT_STACK", RLIMIT_STACK},
};

static const struct { const char *name; enum scmp_compare op; } scmp_ops[] = {
  {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
  {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
  {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

/* An action name and its errno/ret token: ERRNO and TRACE carry one, the others must carry 0. */
static uint32_t parse_action(const char *name, const char *ret, const char *what) {
  uint64_t v = parse_u64(ret, 65535, what);
  if (!strcmp(name, "SCMP_ACT_ERRNO")) return SCMP_ACT_ERRNO((uint32_t)v);
  if (!strcmp(name, "SCMP_ACT_TRACE")) return SCMP_ACT_TRACE((uint32_t)v);
  if (v != 0) die("spec: %s: %s takes no errno (got %s)", what, name, ret);
  if (!strcmp(name, "SCMP_ACT_ALLOW")) return SCMP_ACT_ALLOW;
  if (!strcmp(name, "SCMP_ACT_KILL") || !strcmp(name, "SCMP_ACT_KILL_THREAD")) return SCMP_ACT_KILL_THREAD;
  if (!strcmp(name, "SCMP_ACT_KILL_PROCESS")) return SCMP_ACT_KILL_PROCESS;
  if (!strcmp(name, "SCMP_ACT_TRAP")) return SCMP_ACT_TRAP;
  if (!strcmp(name, "SCMP_ACT_LOG")) return SCMP_ACT_LOG;
  die("spec: %s: unsupported seccomp action \"%.40s\"", what, name);
}

/* sysctl keys: [A-Za-z0-9_-] components separated by '.' or '/', none empty, none "." or "..". */
static void check_sysctl_key(const char *k) {
  size_t comp = 0;
  if (!*k) die("spec: sysctl: empty key");
  for (const char *c = k;; c++) {
    if (*c == '.' || *c == '/' || *c == '\0') {
      if (comp == 0) die("spec: sysctl: key \"%.80s\" has an empty component", k);
      comp = 0;
      if (!*c) break;
      continue;
    }
    bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-';
    if (!ok) die("spec: sysctl: key \"%.80s\" has a character outside [A-Za-z0-9_-./]", k);
    comp++;
  }
}

static void parse_spec(const char *buf, size_t len, struct spec *s) {
  struct reader r = {buf, buf + len};
  memset(s, 0, sizeof *s);
  if (strcmp(tok(&r, "version"), "ocivirt-init-spec") != 0) die("spec: not an ocivirt-init spec (bad magic)");
  if (strcmp(tok(&r, "version number"), "1") != 0) die("spec: unsupported version");
  bool have_cwd = false, ended = false;
  while (!ended) {
    const char *k = tok(&r, "a record or end");
    if (!strcmp(k, "end")) {
      ended = true;
    } else if (!strcmp(k, "arg")) {
      s->argv = grow(s->argv, &s->argc, sizeof *s->argv, "arg");
      s->argv[s->argc - 1] = tok(&r, "arg value");
    } else if (!strcmp(k, "env")) {
      const char *e = tok(&r, "env value");
      const char *eq = strchr(e, '=');
      if (!eq || eq == e) die("spec: env: \"%.60s\" is not NAME=VALUE", e);
      s->envp = grow(s->envp, &s->envc, sizeof *s->envp, "env");
      s->envp[s->envc - 1] = e;
    } else if (!strcmp(k, "cwd")) {
      if (have_cwd) die("spec: cwd given twice");
      s->cwd = tok(&r, "cwd");
      if (s->cwd[0] != '/') die("spec: cwd: \"%.80s\" is not absolute", s->cwd);
      have_cwd = true;
    } else if (!strcmp(k, "user")) {
      if (s->have_user) die("spec: user given twice");
      s->uid = (uid_t)parse_u64(tok(&r, "uid"), UINT32_MAX - 1, "user uid");
      s->gid = (gid_t)parse_u64(tok(&r, "gid"), UINT32_MAX - 1, "user gid");
      s->have_user = true;
    } else if (!strcmp(k, "group")) {
      gid_t g = (gid_t)parse_u64(tok(&r, "group"), UINT32_MAX - 1, "group");
      s->groups = grow(s->groups, &s->ngroups, sizeof *s->groups, "group");
      s->groups[s->ngroups - 1] = g;
    } else if (!strcmp(k, "umask")) {
      if (s->have_umask) die("spec: umask given twice");
      s->umask = (mode_t)parse_u64(tok(&r, "umask"), 0777, "umask");
      s->have_umask = true;
    } else if (!strcmp(k, "rlimit")) {
      const char *name = tok(&r, "rlimit name");
      int res = -1;
      for (size_t i = 0; i < sizeof rlimit_names / sizeof *rlimit_names; i++)
        if (!strcmp(name, rlimit_names[i].name)) res = rlimit_names[i].res;
      if (res < 0) die("spec: rlimit: unknown resource \"%.40s\"", name);
      for (size_t i = 0; i < s->nrlimits; i++)
        if (s->rlimits[i].resource == res) die("spec: rlimit: %s given twice", name);
      uint64_t soft = parse_u64(tok(&r, "rlimit soft"), UINT64_MAX, "rlimit soft");
      uint64_t hard = parse_u64(tok(&r, "rlimit hard"), UINT64_MAX, "rlimit hard");
      if (soft > hard) die("spec: rlimit: %s soft %llu is above hard %llu", name, (unsigned long long)soft, (unsigned long long)hard);
      s->rlimits = grow(s->rlimits, &s->nrlimits, sizeof *s->rlimits, "rlimit");
      s->rlimits[s->nrlimits - 1] = (struct rlim){res, (rlim_t)soft, (rlim_t)hard};
    } else if (!strcmp(k, "oom_score_adj")) {
      if (s->have_oom) die("spec: oom_score_adj given twice");
      s->oom = (int)parse_i64(tok(&r, "oom_score_adj"), -1000, 1000, "oom_score_adj");
      s->have_oom = true;
    } else if (!strcmp(k, "no_new_privs")) {
      s->nnp = true;
    } else if (!strcmp(k, "caps")) {
      if (s->caps) die("spec: caps given twice");
      s->caps = true;
    } else if (!strcmp(k, "cap")) {
      const char *set = tok(&r, "cap set");
      uint64_t n = parse_u64(tok(&r, "cap number"), 63, "cap number");
      uint64_t *m = !strcmp(set, "bounding") ? &s->cap_bnd : !strcmp(set, "effective") ? &s->cap_eff
                  : !strcmp(set, "permitted") ? &s->cap_prm : !strcmp(set, "inheritable") ? &s->cap_inh
                  : !strcmp(set, "ambient") ? &s->cap_amb : NULL;
      if (!m) die("spec: cap: unknown set \"%.40s\"", set);
      *m |= 1ull << n;
    } else if (!strcmp(k, "sysctl")) {
      const char *key = tok(&r, "sysctl key");
      const char *value = tok(&r, "sysctl value");
      check_sysctl_key(key);
      s->sysctls = grow(s->sysctls, &s->nsysctls, sizeof *s->sysctls, "sysctl");
      s->sysctls[s->nsysctls - 1] = (struct sysctl){key, value};
    } else if (!strcmp(k, "seccomp_default")) {
      if (s->seccomp) die("spec: seccomp_default given twice");
      const char *a = tok(&r, "seccomp default action");
      s->scmp_default = parse_action(a, tok(&r, "seccomp default errno"), "seccomp_default");
      s->seccomp = true;
    } else if (!strcmp(k, "seccomp_arch")) {
      s->scmp_arches = grow(s->scmp_arches, &s->narches, sizeof *s->scmp_arches, "seccomp_arch");
      s->scmp_arches[s->narches - 1] = tok(&r, "seccomp arch");
    } else if (!strcmp(k, "seccomp_flag")) {
      const char *f = tok(&r, "seccomp flag");
      if (!strcmp(f, "SECCOMP_FILTER_FLAG_LOG")) s->flag_log = true;
      else if (!strcmp(f, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")) s->flag_ssb = true;
      else if (!strcmp(f, "SECCOMP_FILTER_FLAG_TSYNC")) s->flag_tsync = true;
      else die("spec: seccomp_flag: unsupported flag \"%.60s\"", f);
    } else if (!strcmp(k, "seccomp_rule")) {
      struct scmp_rule rule = {0};
      rule.name = tok(&r, "seccomp rule syscall");
      if (!*rule.name) die("spec: seccomp_rule: empty syscall name");
      const char *a = tok(&r, "seccomp rule action");
      rule.action = parse_action(a, tok(&r, "seccomp rule errno"), "seccomp_rule");
      rule.nargs = (unsigned)parse_u64(tok(&r, "seccomp rule arg count"), 6, "seccomp_rule arg count");
      for (unsigned i = 0; i < rule.nargs; i++) {
        struct scmp_cond *c = &rule.args[i];
        c->index = (unsigned)parse_u64(tok(&r, "seccomp arg index"), 5, "seccomp arg index");
        const char *op = tok(&r, "seccomp arg op");
        bool found = false;
        for (size_t j = 0; j < sizeof scmp_ops / sizeof *scmp_ops; j++)
          if (!strcmp(op, scmp_ops[j].name)) { c->op = scmp_ops[j].op; found = true; }
        if (!found) die("spec: seccomp_rule: unknown operator \"%.40s\"", op);
        c->a = parse_u64(tok(&r, "seccomp arg value"), UINT64_MAX, "seccomp arg value");
        c->b = parse_u64(tok(&r, "seccomp arg valueTwo"), UINT64_MAX, "seccomp arg valueTwo");
      }
      s->rules = grow(s->rules, &s->nrules, sizeof *s->rules, "seccomp_rule");
      s->rules[s->nrules - 1] = rule;
    } else if (!strcmp(k, "status")) {
      if (s->status_path) die("spec: status given twice");
      s->status_path = tok(&r, "status path");
      if (s->status_path[0] != '/') die("spec: status: path is not absolute");
    } else if (!strcmp(k, "log")) {
      if (s->log_dir) die("spec: log given twice");
      s->log_dir = tok(&r, "log directory");
      if (s->log_dir[0] != '/') die("spec: log: directory is not absolute");
      s->log_bytes = parse_u64(tok(&r, "log file bytes"), LOG_FILE_MAX, "log file bytes");
      if (s->log_bytes < LOG_FILE_MIN) die("spec: log: file bytes below %u", LOG_FILE_MIN);
    } else {
      die("spec: unknown record \"%.40s\"", k);
    }
  }
  if (r.p != r.end) die("spec: %zu bytes after the end record", (size_t)(r.end - r.p));
  if (s->argc == 0) die("spec: no arg record (nothing to run)");
  if (!s->argv[0][0]) die("spec: the first arg (the program) is empty");
  if (!have_cwd) die("spec: no cwd record");
  if (!s->have_user) die("spec: no user record");
  if ((s->narches || s->nrules || s->flag_log || s->flag_ssb || s->flag_tsync) && !s->seccomp)
    die("spec: seccomp records without seccomp_default");
  if ((s->cap_bnd | s->cap_eff | s->cap_prm | s->cap_inh | s->cap_amb) && !s->caps)
    die("spec: cap records without caps");
  s->argv = realloc(s->argv, (s->argc + 1) * sizeof *s->argv);
  s->envp = realloc(s->envp, (s->envc + 1) * sizeof *s->envp);
  if (!s->argv || !s->envp) die("out of memory");
  s->argv[s->argc] = NULL;
  s->envp[s->envc] = NULL;
}

static char *read_spec(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) die("spec: open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0) die("spec: stat %s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) die("spec: %s is not a regular file", path);
  if (st.st_size > SPEC_MAX) die("spec: %s is larger than %u bytes", path, SPEC_MAX);
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) die("out of memory");
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("spec: read %s: %s", path, strerror(errno));
    if (n == 0) break;
    got += (size_t)n;
    if (got > (size_t)st.st_size) die("spec: %s grew while being read", path);
  }
  close(fd);
  *len = got;
  return buf;
}

/* ---------- the child: apply the spec, then exec ---------- */

static int err_fd = -1; /* write end of the CLOEXEC pipe to the parent */

/* Report a failed step to the parent (one message, then exit). The code tells the parent's exit status. */
_Noreturn static void fail(int code, const char *fmt, ...) {
  char buf[1024];
  buf[0] = (char)code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + 1, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  ssize_t w = write(err_fd, buf, (size_t)n + 1);
  (void)w;
  _exit(code);
}

static int open_proc(void) {
  int fd = open("/proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fail(EXIT_SETUP, "open /proc: %s", strerror(errno));
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) fail(EXIT_SETUP, "statfs /proc: %s", strerror(errno));
  if (sf.f_type != PROC_SUPER_MAGIC) fail(EXIT_SETUP, "/proc is not a procfs mount");
  return fd;
}

/* Open a file beneath the verified /proc for writing; `symlinks` allows only kernel symlinks such
 * as "self" (never magic links). The result must still be on procfs. */
static int open_proc_file(int procfd, const char *rel, bool symlinks, const char *what) {
  struct open_how how = {
    .flags = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW,
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (symlinks ? 0 : RESOLVE_NO_SYMLINKS),
  };
  int fd = (int)syscall(SYS_openat2, procfd, rel, &how, sizeof how);
  if (fd < 0) fail(EXIT_SETUP, "%s: open /proc/%s: %s", what, rel, strerror(errno));
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) fail(EXIT_SETUP, "%s: statfs /proc/%s: %s", what, rel, strerror(errno));
  if (sf.f_type != PROC_SUPER_MAGIC) fail(EXIT_SETUP, "%s: /proc/%s is not on procfs", what, rel);
  return fd;
}

static void write_all(int fd, const char *data, size_t len, const char *what, const char *rel) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(EXIT_SETUP, "%s: write /proc/%s: %s", what, rel, strerror(errno));
    data += n;
    len -= (size_t)n;
  }
}

static void apply_sysctls(const struct spec *s, int procfd) {
  for (size_t i = 0; i < s->nsysctls; i++) {
    char rel[PATH_MAX];
    int n = snprintf(rel, sizeof rel, "sys/%s", s->sysctls[i].key);
    if (n < 0 || (size_t)n >= sizeof rel) fail(EXIT_SETUP, "sysctl %.80s: key too long", s->sysctls[i].key);
    for (char *c = rel + 4; *c; c++) if (*c == '.') *c = '/';
    char what[200];
    snprintf(what, sizeof what, "sysctl %.160s", s->sysctls[i].key);
    int fd = open_proc_file(procfd, rel, false, what);
    write_all(fd, s->sysctls[i].value, strlen(s->sysctls[i].value), what, rel);
    close(fd);
  }
}

/* The program: argv[0] itself when it holds a '/', else the first executable match on the
 * spec env's PATH (like runc; no PATH in the env means no search). */
static const char *find_program(const struct spec *s) {
  const char *a0 = s->argv[0];
  if (strchr(a0, '/')) return a0;
  const char *path = NULL;
  for (size_t i = 0; i < s->envc; i++)
    if (!strncmp(s->envp[i], "PATH=", 5)) path = s->envp[i] + 5;
  if (!path) fail(EXIT_NOTFOUND, "exec %.200s: not found (no PATH in the process env)", a0);
  static char full[PATH_MAX];
  int last_err = ENOENT;
  for (const char *p = path;;) {
    const char *colon = strchrnul(p, ':');
    size_t dl = (size_t)(colon - p);
    const char *dir = dl ? p : ".";
    if (!dl) dl = 1;
    if (dl + 1 + strlen(a0) < sizeof full) {
      memcpy(full, dir, dl);
      full[dl] = '/';
      strcpy(full + dl + 1, a0);
      struct stat st;
      if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(full, X_OK) == 0) return full;
        last_err = EACCES;
      }
    }
    if (!*colon) break;
    p = colon + 1;
  }
  fail(last_err == EACCES ? EXIT_NOEXEC : EXIT_NOTFOUND, "exec %.200s: %s (searched PATH=%.400s)", a0,
       last_err == EACCES ? "permission denied" : "not found", path);
}

static scmp_filter_ctx build_seccomp(const struct spec *s) {
  scmp_filter_ctx ctx = seccomp_init(s->scmp_default);
  if (!ctx) fail(EXIT_SETUP, "seccomp: seccomp_init failed");
  /* libseccomp sets no_new_privs by itself unless told not to: only the spec decides that */
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) fail(EXIT_SETUP, "seccomp: clearing CTL_NNP: %s", strerror(-rc));
  /* the kernel's own errno on a failed load (else libseccomp says ECANCELED) */
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1)) < 0)
    fail(EXIT_SETUP, "seccomp: SCMP_FLTATR_API_SYSRAWRC: %s", strerror(-rc));
  if (s->flag_log && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1)) < 0)
    fail(EXIT_SETUP, "seccomp: SECCOMP_FILTER_FLAG_LOG: %s", strerror(-rc));
  if (s->flag_ssb && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1)) < 0)
    fail(EXIT_SETUP, "seccomp: SECCOMP_FILTER_FLAG_SPEC_ALLOW: %s", strerror(-rc));
  if (s->flag_tsync && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0)
    fail(EXIT_SETUP, "seccomp: SECCOMP_FILTER_FLAG_TSYNC: %s", strerror(-rc));
  for (size_t i = 0; i < s->narches; i++) {
    const char *name = s->scmp_arches[i];
    char lower[64];
    if (strncmp(name, "SCMP_ARCH_", 10) != 0 || strlen(name) - 10 >= sizeof lower)
      fail(EXIT_SETUP, "seccomp: bad architecture \"%.60s\"", name);
    size_t j = 0;
    for (const char *c = name + 10; *c; c++) lower[j++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    lower[j] = '\0';
    uint32_t arch = seccomp_arch_resolve_name(lower);
    if (arch == 0) {
      /* unknown to this libseccomp: it cannot be listed, so its syscalls hit the bad-arch action (kill) */
      msg("seccomp: architecture %s is unknown to libseccomp, left out (its syscalls are killed)", name);
      continue;
    }
    rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) fail(EXIT_SETUP, "seccomp: adding architecture %s: %s", name, strerror(-rc));
  }
  for (size_t i = 0; i < s->nrules; i++) {
    const struct scmp_rule *r = &s->rules[i];
    int nr = seccomp_syscall_resolve_name(r->name);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown to libseccomp: skipped, as runc does (README) */
    if (r->action == s->scmp_default) continue; /* libseccomp refuses such rules; they change nothing */
    struct scmp_arg_cmp cmp[6];
    bool repeated = false;
    for (unsigned a = 0; a < r->nargs; a++) {
      cmp[a] = (struct scmp_arg_cmp){r->args[a].index, r->args[a].op, r->args[a].a, r->args[a].b};
      for (unsigned b = 0; b < a; b++) if (r->args[b].index == r->args[a].index) repeated = true;
    }
    if (!repeated) {
      rc = seccomp_rule_add_array(ctx, r->action, nr, r->nargs, cmp);
      if (rc < 0) fail(EXIT_SETUP, "seccomp: rule for %s: %s", r->name, strerror(-rc));
    } else {
      /* libseccomp takes one comparison per argument in a rule: like runc, one rule per condition */
      for (unsigned a = 0; a < r->nargs; a++) {
        rc = seccomp_rule_add_array(ctx, r->action, nr, 1, &cmp[a]);
        if (rc < 0) fail(EXIT_SETUP, "seccomp: rule for %s: %s", r->name, strerror(-rc));
      }
    }
  }
  return ctx;
}

static void load_seccomp(scmp_filter_ctx ctx, bool nnp) {
  int rc = seccomp_load(ctx);
  if (rc == -EACCES && !nnp)
    fail(EXIT_SETUP, "seccomp: loading the filter: %s (without no_new_privs the kernel requires CAP_SYS_ADMIN)", strerror(-rc));
  if (rc < 0) fail(EXIT_SETUP, "seccomp: loading the filter: %s", strerror(-rc));
}

/* Drops every capability outside the spec's bounding set (needs CAP_SETPCAP), then keeps the
 * permitted set across the uid switch that follows. */
static void drop_bounding(const struct spec *s) {
  for (unsigned c = 0; c < 64; c++) {
    int in = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
    if (in < 0) break; /* past the kernel's last capability */
    if (s->cap_bnd & (1ull << c)) {
      if (!in) fail(EXIT_SETUP, "capabilities: %u is asked for but not in the bounding set the shim was given", c);
    } else if (in && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
      fail(EXIT_SETUP, "capabilities: dropping %u from the bounding set: %s", c, strerror(errno));
    }
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(EXIT_SETUP, "capabilities: PR_SET_KEEPCAPS: %s", strerror(errno));
}

/* Effective, permitted, inheritable exactly as the spec says, then the ambient set. */
static void set_caps(const struct spec *s) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {
    {(uint32_t)s->cap_eff, (uint32_t)s->cap_prm, (uint32_t)s->cap_inh},
    {(uint32_t)(s->cap_eff >> 32), (uint32_t)(s->cap_prm >> 32), (uint32_t)(s->cap_inh >> 32)},
  };
  if (syscall(SYS_capset, &h, d) < 0) fail(EXIT_SETUP, "capabilities: capset: %s", strerror(errno));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && s->cap_amb)
    fail(EXIT_SETUP, "capabilities: clearing the ambient set: %s", strerror(errno));
  for (unsigned c = 0; c < 64; c++)
    if ((s->cap_amb & (1ull << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      fail(EXIT_SETUP, "capabilities: raising %u in the ambient set: %s", c, strerror(errno));
}

_Noreturn static void child(const struct spec *s) {
  log_child_stdio();
  /* own process group, in the terminal's foreground when stdin is one (like tini) */
  if (setpgid(0, 0) < 0) fail(EXIT_SETUP, "setpgid: %s", strerror(errno));
  if (isatty(STDIN_FILENO)) {
    if (tcsetpgrp(STDIN_FILENO, getpgrp()) < 0 && errno != ENOTTY && errno != ENXIO)
      fail(EXIT_SETUP, "tcsetpgrp: %s", strerror(errno));
  }
  int procfd = (s->nsysctls || s->have_oom) ? open_proc() : -1;
  apply_sysctls(s, procfd);
  for (size_t i = 0; i < s->nrlimits; i++) {
    struct rlimit rl = {s->rlimits[i].soft, s->rlimits[i].hard};
    if (setrlimit(s->rlimits[i].resource, &rl) < 0) {
      const char *name = "?";
      for (size_t j = 0; j < sizeof rlimit_names / sizeof *rlimit_names; j++)
        if (rlimit_names[j].res == s->rlimits[i].resource) name = rlimit_names[j].name;
      fail(EXIT_SETUP, "rlimit %s (soft %llu, hard %llu): %s", name, (unsigned long long)rl.rlim_cur,
           (unsigned long long)rl.rlim_max, strerror(errno));
    }
  }
  if (s->have_oom) {
    char v[16];
    int n = snprintf(v, sizeof v, "%d", s->oom);
    int fd = open_proc_file(procfd, "self/oom_score_adj", true, "oom_score_adj");
    write_all(fd, v, (size_t)n, "oom_score_adj", "self/oom_score_adj");
    close(fd);
  }
  if (procfd >= 0) close(procfd);
  if (chdir(s->cwd) < 0) fail(EXIT_SETUP, "cwd %.200s: %s", s->cwd, strerror(errno));
  if (s->have_umask) umask(s->umask);
  const char *program = find_program(s);
  scmp_filter_ctx ctx = s->seccomp ? build_seccomp(s) : NULL;
  /* signals: every disposition default and none blocked, whatever the shim was started with: an
   * ignored signal survives execve, and libvirt_lxc starts init with SIGPIPE ignored (a process
   * ignoring it unasked spins on EPIPE: `yes | head` never ends) */
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL); /* (EINVAL for the libc's own: left) */
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) fail(EXIT_SETUP, "sigprocmask: %s", strerror(errno));
  /* without no_new_privs a filter needs CAP_SYS_ADMIN: load it while still root (as runc does) */
  if (ctx && !s->nnp) load_seccomp(ctx, false);
  if (s->caps) drop_bounding(s);
  if (setgroups(s->ngroups, s->groups) < 0) fail(EXIT_SETUP, "setgroups: %s", strerror(errno));
  if (setresgid(s->gid, s->gid, s->gid) < 0) fail(EXIT_SETUP, "gid %u: %s", (unsigned)s->gid, strerror(errno));
  if (setresuid(s->uid, s->uid, s->uid) < 0) fail(EXIT_SETUP, "uid %u: %s", (unsigned)s->uid, strerror(errno));
  if (s->caps) set_caps(s);
  if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(EXIT_SETUP, "no_new_privs: %s", strerror(errno));
  if (ctx && s->nnp) load_seccomp(ctx, true); /* last: the shim's own syscalls above are not filtered */
  execve(program, (char *const *)s->argv, (char *const *)s->envp);
  int e = errno;
  fail(e == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC, "exec %.200s: %s", program, strerror(e));
}

/* ---------- the parent: PID 1 ---------- */

static void write_status(int fd, const char *text) {
  if (fd < 0) return;
  size_t len = strlen(text);
  if (pwrite(fd, text, len, 0) != (ssize_t)len || ftruncate(fd, (off_t)len) < 0 || fsync(fd) < 0)
    msg("status: writing: %s", strerror(errno));
}

int main(int argc, char **argv) {
  if (argc != 2) die("usage: ocivirt-init SPEC-FILE");
  size_t len;
  char *buf = read_spec(argv[1], &len);
  struct spec s;
  parse_spec(buf, len, &s);

  int status_fd = -1;
  if (s.status_path) {
    status_fd = open(s.status_path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
    if (status_fd < 0) die("status: open %s: %s", s.status_path, strerror(errno));
    struct stat st;
    if (fstat(status_fd, &st) < 0 || !S_ISREG(st.st_mode)) die("status: %s is not a regular file", s.status_path);
    write_status(status_fd, "running\n");
  }

  /* every asynchronous signal is blocked and taken with sigwaitinfo; faults stay deliverable */
  sigset_t all;
  sigfillset(&all);
  int sync_signals[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof sync_signals / sizeof *sync_signals; i++) sigdelset(&all, sync_signals[i]);
  if (sigprocmask(SIG_SETMASK, &all, NULL) < 0) die("sigprocmask: %s", strerror(errno));

  /* outside a pid namespace (not PID 1), orphans still come to the shim to be reaped */
  if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));

  if (s.log_dir) log_start(s.log_dir, s.log_bytes);

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(pipefd[0]);
    err_fd = pipefd[1];
    child(&s);
  }
  close(pipefd[1]);
  log_parent_stdio();

  /* the child's report: EOF with nothing means execve succeeded (the pipe closed on exec) */
  char report[1024];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(pipefd[0], report + got, sizeof report - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
    if (got == sizeof report - 1) break;
  }
  close(pipefd[0]);
  if (got > 0) {
    report[got] = '\0';
    int code = (unsigned char)report[0];
    msg("%s", report + 1);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    write_status(status_fd, "setup-failed\n");
    log_finish();
    return code == EXIT_NOEXEC || code == EXIT_NOTFOUND ? code : EXIT_SETUP;
  }

  /* the last signal sent from outside the container (sender pid 0: not in our pid namespace, i.e.
   * libvirt on the host: a shutdown or a stop); recorded with the exit, so the daemon can tell a
   * stop from outside from the process ending by itself */
  int outside = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) {
      if (errno == EINTR) continue;
      die("sigwaitinfo: %s", strerror(errno));
    }
    if (sig != SIGCHLD && si.si_pid == 0 && (si.si_code == SI_USER || si.si_code == SI_TKILL || si.si_code == SI_QUEUE)) outside = sig;
    if (sig != SIGCHLD) {
      if (kill(pid, sig) < 0 && errno != ESRCH) msg("forwarding signal %d: %s", sig, strerror(errno));
      continue;
    }
    for (;;) {
      int st;
      pid_t w = waitpid(-1, &st, WNOHANG);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break; /* none left to reap now (or no children at all) */
      if (w != pid) {
        log_reaped(w);
        continue;
      }
      char text[64];
      int code, n;
      if (WIFEXITED(st)) {
        code = WEXITSTATUS(st);
        n = snprintf(text, sizeof text, "exited %d\n", code);
      } else {
        code = 128 + WTERMSIG(st);
        n = snprintf(text, sizeof text, "signaled %d\n", WTERMSIG(st));
      }
      if (outside) snprintf(text + n, sizeof text - (size_t)n, "outside-signal %d\n", outside);
      write_status(status_fd, text);
      log_finish();
      /* leaving PID 1 ends the pid namespace: the kernel kills any process left */
      return code;
    }
  }
}
