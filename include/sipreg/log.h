/* Logging to stderr (journald picks it up) or syslog, with levels; never logs secrets. A value a client
 * controls reaches a line only through log_escape(), and every record is one line. */
#ifndef SIPREG_LOG_H
#define SIPREG_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Where records go: stderr (default; one line each, timestamped) or syslog(3) (facility
 * daemon, ident "sipregd", the level as its priority, no timestamp of ours). */
enum log_target { LOG_TARGET_STDERR = 0, LOG_TARGET_SYSLOG };
void log_set_target(enum log_target target);
/* SIGHUP: syslog's connection is closed and opened again (a restarted syslog daemon is
 * reached again); stderr belongs to whoever started us and is left as it is. */
void log_reopen(void);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error", "warn", "info", "debug" -> level; returns 0 or EINVAL. */
int log_level_parse(const char *name, enum log_level *levelp);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line that would repeat at request rate (a backend outage, overload) is written at
 * most once per LOG_LIMIT_INTERVAL_S per call site; the next one written says how many
 * were held back, so the log shows the event and its size without flooding. One zeroed
 * struct log_limit per call site. */
#define LOG_LIMIT_INTERVAL_S 10
struct log_limit {
	int64_t next_ns; /* CLOCK_MONOTONIC: the first moment the next line may be written */
	uint64_t held;	 /* lines held back since the last one written */
};
void log_limited(struct log_limit *ll, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The printable form of bytes a client controls (a user name, an AOR, a header value) for
 * a log line: printable ASCII stays as it is; control bytes, DEL, '"', '\\' and bytes
 * >= 0x80 become \xHH, so a value can neither end the line nor pass for the text around
 * it. A value that does not fit ends in "\..." (no value can write that: its backslash
 * would be \x5c). Writes a NUL-terminated string into buf, cap >= LOG_ESC_MIN, and
 * returns buf. LOG_ESC_SIZE holds 64 bytes of the worst value, or 250 of a plain one. */
#define LOG_ESC_MIN  8
#define LOG_ESC_SIZE 256
const char *log_escape(const void *p, size_t len, char *buf, size_t cap);

/* The per-IP SIP trace (ops/debug.c): one record "trace: " head, then the bytes of one
 * whole message through log_escape() (CR LF shows as \x0d\x0a), at any level and without
 * the length cap of other records, so a trace is complete and no line of it is forged. */
void log_trace(const char *head, const void *p, size_t len);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                     \
	do {                                                                               \
		if (log_get_level() >= LOG_DEBUG)                                          \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                   \
	} while (0)

#endif
