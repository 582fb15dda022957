/* The daemon's control socket (control.c): a Unix stream socket on which sipregctl asks
 * a running sipregd about what only it can see, its in-process store (memory backend).
 * One request line per connection ("bindings [AOR]", "dump [AOR]", "unbind AOR [KEY]",
 * "users [DOMAIN]", "debug ip ADDR [on|off]", "debug list", "stats"), the
 * answer as show.c lines, then "OK" or "ERR <errno name> <message>", then close. */
#ifndef SIPREG_OPS_CONTROL_H
#define SIPREG_OPS_CONTROL_H

#include <event2/event.h>

#include "ops/stats.h"
#include "sipreg/location.h"

struct control;
struct debug;

/* Fill a snapshot of the running instance's counters (the daemon's server_stats). */
typedef void(control_stats_h)(struct ops_stats *st, void *arg);

/* Listen on path (a stale socket file left by a dead daemon is replaced; a live one is
 * refused with EADDRINUSE), mode 0600. loc and dir are borrowed and must outlive the
 * control. *cp is owned by the caller: control_free(). */
int control_alloc(struct control **cp, struct event_base *base, const char *path,
		  struct location *loc, struct location *dir);
/* Close the socket and every connection (their operations are cancelled), remove the
 * socket file. Sets *cp to NULL. */
void control_free(struct control **cp);
/* control.group: the socket file is given to gid and made mode 0660, so that group's
 * operators reach it without root. Returns 0 or errno (chown/chmod). */
int control_set_group(struct control *ctl, unsigned gid);
/* What "debug ip ADDR [on|off]" / "debug list" change and "stats" reads; both borrowed,
 * either may be NULL (the command then answers ENOTSUP). */
void control_set_ops(struct control *ctl, struct debug *dbg, control_stats_h *statsh,
		     void *arg);

#endif
