/* The counters' names, help texts and order, written once for the control socket and
 * the Prometheus endpoint; and the backend latency histogram. */
#include "ops/stats.h"

#include <inttypes.h>
#include <stdio.h>

const uint32_t stats_lat_bounds_us[STATS_LAT_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
};

void stats_latency_observe(struct stats_latency *h, int64_t ns)
{
	uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
	size_t i;

	for (i = 0; i < STATS_LAT_BUCKETS && us > stats_lat_bounds_us[i]; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

static const char *const stats_503_names[STATS_503_N] = {
    [STATS_503_BACKEND_ERROR] = "backend_error",
    [STATS_503_BACKEND_REFUSED] = "backend_refused",
    [STATS_503_MAX_PENDING] = "max_pending",
    [STATS_503_BACKEND_DELAY] = "backend_delay",
    [STATS_503_MAX_TRANSACTIONS] = "max_transactions",
    [STATS_503_OUTCOME] = "max_contacts",
};

static void stats_one(stats_entry_h *h, void *arg, const char *name, bool gauge, uint64_t value,
		      const char *help)
{
	struct stats_entry e = {.name = name, .help = help, .value = value, .gauge = gauge};

	h(&e, arg);
}

void stats_walk(const struct ops_stats *st, stats_entry_h *h, void *arg)
{
	struct stats_entry e;
	char code[8];

	stats_one(h, arg, "sip_received", false, st->rx_msgs, "SIP messages received");
	stats_one(h, arg, "sip_sent", false, st->tx_msgs, "SIP messages sent");
	stats_one(h, arg, "sip_received_dropped", false, st->rx_dropped,
		  "Oversize or unframeable messages dropped");
	stats_one(h, arg, "sip_sent_dropped", false, st->tx_dropped,
		  "Sends that failed (full buffer, closed connection)");
	stats_one(h, arg, "udp_shed", false, st->rx_stale,
		  "UDP datagrams shed unread, older than limits.max_queue_delay_ms");
	stats_one(h, arg, "tcp_connections", true, st->tcp_conns, "TCP connections open");
	stats_one(h, arg, "tcp_connections_refused", false, st->tcp_conns_refused,
		  "TCP connections refused: limits.max_tcp_connections");
	stats_one(h, arg, "tcp_connections_refused_source", false, st->tcp_conns_refused_source,
		  "TCP connections refused: limits.max_tcp_connections_per_source");
	stats_one(h, arg, "tcp_output_bytes", true, st->tcp_out_bytes,
		  "TCP output not yet taken by the kernel");
	stats_one(h, arg, "tcp_output_closed", false, st->tcp_out_closed,
		  "TCP connections closed because their peer did not read");
	stats_one(h, arg, "transactions", true, st->transactions, "Live server transactions");
	stats_one(h, arg, "backend_pending", true, st->backend_pending,
		  "Backend operations in flight");
	stats_one(h, arg, "backend_delay_ms", true, st->backend_delay_ms,
		  "The backend's standing delay (overload control)");
	stats_one(h, arg, "backend_errors", false, st->backend_errors,
		  "Backend operations that completed with an error");
	stats_one(h, arg, "backend_up", true, st->backend_up,
		  "1 while the backend answers (what /healthz says)");
	for (int c = STATS_CODE_MIN; c <= STATS_CODE_MAX; c++) {
		if (!st->register_codes[c - STATS_CODE_MIN])
			continue;
		snprintf(code, sizeof(code), "%d", c);
		e = (struct stats_entry){.name = "register_responses",
					 .help = "REGISTER final responses by status code",
					 .label = "code",
					 .label_value = code,
					 .value = st->register_codes[c - STATS_CODE_MIN]};
		h(&e, arg);
	}
	stats_one(h, arg, "auth_failures", false, st->auth_failures,
		  "Answered challenges refused (wrong credentials, unknown or disabled user)");
	stats_one(h, arg, "auth_banned", false, st->auth_banned,
		  "REGISTERs refused or dropped for a ban in force");
	for (int i = 0; i < STATS_503_N; i++) {
		e = (struct stats_entry){.name = "unavailable",
					 .help = "REGISTERs answered 503, by cause",
					 .label = "cause",
					 .label_value = stats_503_names[i],
					 .value = st->unavailable[i]};
		h(&e, arg);
	}
}

struct stats_text_ctx {
	void (*write)(const char *p, size_t len, void *arg);
	void *arg;
};

static void stats_text_entry(const struct stats_entry *e, void *arg)
{
	struct stats_text_ctx *t = arg;
	char line[160];
	int n;

	if (e->label)
		n = snprintf(line, sizeof(line), "%s.%s %" PRIu64 "\n", e->name, e->label_value,
			     e->value);
	else
		n = snprintf(line, sizeof(line), "%s %" PRIu64 "\n", e->name, e->value);
	if (n > 0 && (size_t)n < sizeof(line))
		t->write(line, (size_t)n, t->arg);
}

void stats_text(const struct ops_stats *st, void (*write)(const char *p, size_t len, void *arg),
		void *arg)
{
	struct stats_text_ctx t = {.write = write, .arg = arg};

	stats_walk(st, stats_text_entry, &t);
}
