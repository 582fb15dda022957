/* The daemon's request path: a message from a transport, through validation and the
 * transaction table, to the method handlers (REGISTER, OPTIONS, the rest) and back. */
#ifndef SIPREG_SERVER_H
#define SIPREG_SERVER_H

#include "config/config.h"

struct event_base;
struct server;

/* Set everything up from cfg (transports, transactions, auth, location). cfg must outlive
 * the server. Returns 0 or errno. *sp: server_free(). */
int server_alloc(struct server **sp, struct event_base *base, const struct config *cfg);
void server_free(struct server **sp);

#endif
