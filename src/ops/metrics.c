/* /metrics and /healthz over libevent's evhttp: the same snapshot the control socket's
 * "stats" prints (ops/stats.c names every value), in the Prometheus text exposition
 * format 0.0.4, plus the backend latency histogram. */
#include "ops/metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sipreg/log.h"

struct metrics {
	struct evhttp *http;
	metrics_stats_h *statsh;
	metrics_health_h *healthh;
	void *arg;
};

struct metrics_out {
	struct evbuffer *buf;
	const char *last; /* the family whose HELP and TYPE are written */
};

static void metrics_entry(const struct stats_entry *e, void *arg)
{
	struct metrics_out *o = arg;
	const char *suffix = e->gauge ? "" : "_total";

	if (!o->last || strcmp(o->last, e->name) != 0) {
		evbuffer_add_printf(o->buf, "# HELP sipreg_%s%s %s\n# TYPE sipreg_%s%s %s\n",
				    e->name, suffix, e->help, e->name, suffix,
				    e->gauge ? "gauge" : "counter");
		o->last = e->name;
	}
	if (e->label)
		evbuffer_add_printf(o->buf, "sipreg_%s%s{%s=\"%s\"} %" PRIu64 "\n", e->name,
				    suffix, e->label, e->label_value, e->value);
	else
		evbuffer_add_printf(o->buf, "sipreg_%s%s %" PRIu64 "\n", e->name, suffix,
				    e->value);
}

static void metrics_histogram(struct evbuffer *buf, const struct stats_latency *h)
{
	uint64_t cum = 0;

	evbuffer_add_printf(buf, "# HELP sipreg_backend_latency_seconds Backend operation "
				 "latency (find user, apply, fetch, the health probe)\n"
				 "# TYPE sipreg_backend_latency_seconds histogram\n");
	for (size_t i = 0; i < STATS_LAT_BUCKETS; i++) {
		cum += h->bucket[i];
		evbuffer_add_printf(buf,
				    "sipreg_backend_latency_seconds_bucket{le=\"%" PRIu32
				    ".%06" PRIu32 "\"} %" PRIu64 "\n",
				    stats_lat_bounds_us[i] / 1000000,
				    stats_lat_bounds_us[i] % 1000000, cum);
	}
	cum += h->bucket[STATS_LAT_BUCKETS];
	evbuffer_add_printf(buf,
			    "sipreg_backend_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
			    "sipreg_backend_latency_seconds_sum %" PRIu64 ".%06" PRIu64 "\n"
			    "sipreg_backend_latency_seconds_count %" PRIu64 "\n",
			    cum, h->sum_us / 1000000, h->sum_us % 1000000, h->count);
}

static void metrics_reply(struct evhttp_request *req, int code, const char *reason,
			  const char *type, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void metrics_request(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *body = evbuffer_new();
	struct metrics_out o = {.buf = body};
	struct ops_stats *st = NULL;

	if (!body) {
		evhttp_send_error(req, 500, "no memory");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evbuffer_add_printf(body, "GET /metrics or GET /healthz\n");
		metrics_reply(req, 405, "Method Not Allowed", "text/plain", body);
		goto out;
	}
	if (path && strcmp(path, "/healthz") == 0) {
		bool up = m->healthh(m->arg);

		evbuffer_add_printf(body, up ? "ok\n" : "backend not answering\n");
		metrics_reply(req, up ? 200 : 503, up ? "OK" : "Service Unavailable",
			      "text/plain", body);
		goto out;
	}
	if (!path || strcmp(path, "/metrics") != 0) {
		evbuffer_add_printf(body, "GET /metrics or GET /healthz\n");
		metrics_reply(req, 404, "Not Found", "text/plain", body);
		goto out;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		evhttp_send_error(req, 500, "no memory");
		goto out;
	}
	m->statsh(st, m->arg);
	stats_walk(st, metrics_entry, &o);
	metrics_histogram(body, &st->backend_latency);
	metrics_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
out:
	free(st);
	evbuffer_free(body);
}

int metrics_alloc(struct metrics **mp, struct event_base *base, const char *addr, uint16_t port,
		  metrics_stats_h *statsh, metrics_health_h *healthh, void *arg)
{
	struct metrics *m;
	int err;

	*mp = NULL;
	if (!base || !addr || !statsh || !healthh)
		return EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return ENOMEM;
	m->statsh = statsh;
	m->healthh = healthh;
	m->arg = arg;
	m->http = evhttp_new(base);
	if (!m->http) {
		free(m);
		return ENOMEM;
	}
	/* A scraper sends a few hundred bytes; anything big is not one. */
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 4096);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(m->http, metrics_request, m);
	errno = 0;
	if (evhttp_bind_socket(m->http, addr, port) != 0) {
		err = errno ? errno : EADDRNOTAVAIL;
		evhttp_free(m->http);
		free(m);
		return err;
	}
	log_info("metrics: listening on http://%s%s%s:%u/metrics", strchr(addr, ':') ? "[" : "",
		 addr, strchr(addr, ':') ? "]" : "", port);
	*mp = m;
	return 0;
}

void metrics_free(struct metrics **mp)
{
	struct metrics *m = *mp;

	if (!m)
		return;
	evhttp_free(m->http);
	free(m);
	*mp = NULL;
}
