/* The HTTP endpoint for monitoring (metrics.listen): GET /metrics, the counters of
 * ops/stats.h in the Prometheus text format, and GET /healthz, 200 while the backend
 * answers and 503 otherwise. libevent's evhttp parses HTTP; nothing here does. */
#ifndef SIPREG_OPS_METRICS_H
#define SIPREG_OPS_METRICS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "ops/stats.h"

struct metrics;

typedef void(metrics_stats_h)(struct ops_stats *st, void *arg);
typedef bool(metrics_health_h)(void *arg);

/* Listen on addr (numeric IPv4 or IPv6, no brackets) and port; statsh and healthh are
 * asked on every request, with arg. Returns 0 or an errno (EADDRINUSE, EADDRNOTAVAIL).
 * *mp: metrics_free(). */
int metrics_alloc(struct metrics **mp, struct event_base *base, const char *addr, uint16_t port,
		  metrics_stats_h *statsh, metrics_health_h *healthh, void *arg);
void metrics_free(struct metrics **mp);

#endif
