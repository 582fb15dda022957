/* log.c's syslog sink: the records, already one escaped line each, handed to syslog(3). */
#include "util/log_syslog.h"

#include <syslog.h>

static bool log_syslog_is_open;

void log_syslog_open(void)
{
	if (log_syslog_is_open)
		closelog();
	/* LOG_NDELAY: connect now, before a chroot or a privilege drop could stop it. */
	openlog("sipregd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog_is_open = true;
}

void log_syslog_close(void)
{
	if (log_syslog_is_open)
		closelog();
	log_syslog_is_open = false;
}

void log_syslog_write(int level, const char *text)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	syslog(prio[level >= 0 && level <= 3 ? level : 3], "%s", text);
}
