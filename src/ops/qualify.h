/* Qualify (qualify.c): OPTIONS pings (RFC 3261 §11) of the contacts this instance holds
 * the flow of, their status and round-trip time stored in the location service. */
#ifndef SIPREG_OPS_QUALIFY_H
#define SIPREG_OPS_QUALIFY_H

#include <stdbool.h>

#include "config/config.h"
#include "sipreg/location.h"

struct event_base;
struct net;
struct sipmsg;
struct qualify;

/* Start pinging with conf (conf->interval > 0). loc and net are borrowed and must outlive
 * the qualify; instance_id names this instance as the location's registered_by does.
 * Returns 0 or ENOMEM/EINVAL. *qp: qualify_free(). */
int qualify_alloc(struct qualify **qp, struct event_base *base, const struct qualify_conf *conf,
		  struct location *loc, struct net *net, const char *instance_id);
/* Stop: pending pings are forgotten, store operations cancelled. Sets *qp to NULL. */
void qualify_free(struct qualify **qp);
/* A response arrived. true when it answered one of our pings (it is consumed). */
bool qualify_response(struct qualify *q, const struct sipmsg *m);

#endif
