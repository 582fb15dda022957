/* The daemon's request path: a message from a transport, through validation and the
 * transaction table, to the method handlers (REGISTER, OPTIONS, the rest) and back. */
#ifndef SIPREG_SERVER_H
#define SIPREG_SERVER_H

#include <stdbool.h>

#include "config/config.h"
#include "ops/stats.h"

struct event_base;
struct server;

/* What server_alloc could not set up, so main() can tell an operator's config problem
 * from a port another process holds (different exit codes). */
enum server_stage { SERVER_STAGE_SETUP = 0, SERVER_STAGE_LISTEN };

/* Set everything up from cfg (transports, transactions, auth, location). cfg must outlive
 * the server. Returns 0 or errno; on failure *stagep (may be NULL) says which part failed
 * (SERVER_STAGE_LISTEN: binding a listener, already logged with its address). *sp:
 * server_free(). */
int server_alloc(struct server **sp, struct event_base *base, const struct config *cfg,
		 enum server_stage *stagep);
void server_free(struct server **sp);

/* A snapshot of the counters (control "stats", /metrics); arg is the server. */
void server_stats(struct ops_stats *st, void *arg);
/* /healthz: did an apply or fetch (a REGISTER's, or the idle probe's) succeed within
 * metrics.health_window seconds, with no failure since? arg is the server. */
bool server_healthy(void *arg);

/* SIGHUP: take from fresh (a config just loaded from the same file) what can change at
 * run time: debug.ip and the memory directory's users. fresh is borrowed for the call;
 * the log level and target are main()'s. Returns 0 or the directory's error (logged). */
int server_reload(struct server *srv, const struct config *fresh);

/* SIGTERM: stop reading, let what is in flight be answered (at most 10 s), then call h
 * once. EALREADY when a drain runs already. */
typedef void(server_drained_h)(void *arg);
int server_drain(struct server *srv, server_drained_h *h, void *arg);

#endif
