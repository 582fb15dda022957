/* The running instance's counters, one snapshot shape for every operator view: the
 * control socket's "stats" (sipregctl stats [--json]) and the Prometheus endpoint
 * (ops/metrics.c) walk the same list, so the two can never disagree on a name or a value. */
#ifndef SIPREG_OPS_STATS_H
#define SIPREG_OPS_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a REGISTER got 503 (RFC 3261 §21.5.4): one counter each. */
enum stats_503 {
	STATS_503_BACKEND_ERROR,    /* the backend answered with an error (store or lookup) */
	STATS_503_BACKEND_REFUSED,  /* a backend call could not start (no connection, queue) */
	STATS_503_MAX_PENDING,	    /* limits.max_pending backend operations in flight */
	STATS_503_BACKEND_DELAY,    /* limits.max_backend_delay_ms */
	STATS_503_MAX_TRANSACTIONS, /* limits.max_transactions */
	STATS_503_OUTCOME,	    /* the store refused (max_contacts_status: 503) */
	STATS_503_N
};

/* Backend latency buckets, upper bounds in microseconds (Prometheus "le"); one more
 * bucket past the last is +Inf. */
#define STATS_LAT_BUCKETS 12
extern const uint32_t stats_lat_bounds_us[STATS_LAT_BUCKETS];

struct stats_latency {
	uint64_t bucket[STATS_LAT_BUCKETS + 1]; /* not cumulative; the last is +Inf */
	uint64_t count, sum_us;
};
/* Count one backend operation that took ns nanoseconds. */
void stats_latency_observe(struct stats_latency *h, int64_t ns);

/* First and last SIP status counted per code; anything else counts as 699. */
#define STATS_CODE_MIN 100
#define STATS_CODE_MAX 699

struct ops_stats {
	/* net (net/net.h's struct net_stats) */
	uint64_t rx_msgs, tx_msgs, rx_dropped, tx_dropped, rx_stale;
	uint64_t tcp_conns, tcp_conns_refused, tcp_conns_refused_source;
	uint64_t tcp_out_bytes, tcp_out_closed;
	/* the transaction table and the backends, now */
	uint64_t transactions, backend_pending, backend_delay_ms;
	/* REGISTER final responses by status code, since start */
	uint64_t register_codes[STATS_CODE_MAX - STATS_CODE_MIN + 1];
	uint64_t auth_failures; /* answered challenges refused: wrong password, unknown user */
	uint64_t auth_banned;	/* REGISTERs refused or dropped for a ban in force */
	uint64_t unavailable[STATS_503_N];
	uint64_t backend_errors; /* operations that completed with an error */
	struct stats_latency backend_latency;
	bool backend_up; /* what /healthz says */
};

/* One value of the snapshot: name, an optional label (key=value, e.g. code=200), and
 * whether it is a gauge (a level now) or a counter (a total since start). */
struct stats_entry {
	const char *name, *help;
	const char *label, *label_value; /* NULL, NULL: no label */
	uint64_t value;
	bool gauge;
};
typedef void(stats_entry_h)(const struct stats_entry *e, void *arg);

/* Every value of st, entries of one name together, in a fixed order; a per-code or
 * per-cause value appears once it is not zero (the 503 causes always). The histogram is
 * not among them (metrics.c writes it). */
void stats_walk(const struct ops_stats *st, stats_entry_h *h, void *arg);

/* The text form of the control socket: "name value" or "name.label_value value", one
 * line per entry, through write (show.h's writer shape). */
void stats_text(const struct ops_stats *st, void (*write)(const char *p, size_t len, void *arg),
		void *arg);

#endif
