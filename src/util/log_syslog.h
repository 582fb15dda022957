/* The syslog(3) sink of log.c, apart because <syslog.h> defines LOG_ERR, LOG_INFO and
 * LOG_DEBUG, which are sipreg/log.h's level names too. */
#ifndef SIPREG_LOG_SYSLOG_H
#define SIPREG_LOG_SYSLOG_H

#include <stdbool.h>

/* Open (or open again) the connection to syslog, ident "sipregd", facility daemon. */
void log_syslog_open(void);
void log_syslog_close(void);
/* level: 0 error, 1 warn, 2 info, 3 debug (enum log_level's values). */
void log_syslog_write(int level, const char *text);

#endif
