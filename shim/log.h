/* The shim's output capture (shim/log.c; design in shim/README.md "Output capture"). */
#ifndef OCIVIRT_LOG_H
#define OCIVIRT_LOG_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define LOG_FILE_MIN (64u << 10)          /* smallest cap of one log file */
#define LOG_FILE_MAX (UINT64_C(1) << 40)  /* largest */

/* PID 1, before the process is forked: opens the log directory (`dir`, absolute; created when
 * missing, never through a symlink), makes the stdout/stderr pipes and forks the logger.
 * Returns false (after a message on the console) when capture cannot start: the process then
 * keeps the console as its stdout/stderr. */
bool log_start(const char *dir, uint64_t file_bytes);
/* The process child: stdout and stderr become the pipes (stdin is left alone). */
void log_child_stdio(void);
/* PID 1 after the fork: its own stderr (shim messages) goes to the log too. */
void log_parent_stdio(void);
/* PID 1 reaped `pid` (so the logger's pid is never used again once reaped). */
void log_reaped(pid_t pid);
/* PID 1, last: the logger drains what the pipes hold, writes it, and exits; waited for at most a few seconds. */
void log_finish(void);
#endif
