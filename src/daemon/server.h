/* The daemon's request path: a message from a transport, through validation and the
 * transaction table, to the method handlers (REGISTER, OPTIONS, the rest) and back. */
#ifndef SIPREG_SERVER_H
#define SIPREG_SERVER_H

#include "config/config.h"

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

#endif
