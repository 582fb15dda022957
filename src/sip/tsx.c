/* Non-INVITE server transactions (RFC 3261 §17.2.2): match retransmissions to their
 * transaction, replay the stored final response, expire it with Timer J.
 *
 * DESIGN: every live transaction is one allocation: the struct, its match key and, once
 * answered, the final response (tsx_reply grows the block; it is re-hooked into the
 * table because realloc may move it). Transactions sit in an hmap keyed by the full
 * match key (compared byte for byte, never just by hash). Timer J is the same for every
 * transaction on unreliable transports, so completed transactions expire in the order
 * they completed: they queue on a FIFO with their expiry time and one libevent timer,
 * re-armed for the head, frees what is due. Cost per transaction: O(1) insert, lookup,
 * expiry; no per-transaction event. Reliable transports have Timer J = 0: the
 * transaction is freed as soon as its response is sent. */
#include "sip/tsx.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "sipreg/clock.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"

#define TSX_TIMER_J_DEFAULT_MS 32000u
/* The expiry timer fires at most this often: a completion every few microseconds must
 * not become a wakeup every few microseconds. Transactions live up to this much longer
 * than Timer J, which RFC 3261 allows (Timer J is a minimum). */
#define TSX_TIMER_SLACK_MS 5u
/* Bucket array bound (32 MiB of pointers); a larger max_transactions grows it later. */
#define TSX_BUCKETS_MAX ((size_t)1 << 22)

/* Where a transaction's answers go, kept small: a struct net_flow holds a whole
 * sockaddr_storage and the source as text, 208 bytes that a million live transactions
 * (Timer J at 32000/s) would turn into 200 MB. */
struct tsx_peer {
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} addr;
	socklen_t len;
	int udp_fd;
	uint64_t conn_id;
};

struct tsx {
	struct hmap_node node;
	struct tsx_table *tab;
	struct tsx *next; /* completed FIFO */
	uint64_t expire_ms;
	tsx_abort_h *aborth;
	void *owner;
	struct tsx_peer peer;
	uint16_t reply_port;
	uint8_t proto; /* enum sip_proto */
	bool completed;
	uint32_t key_len;
	uint32_t resp_len; /* 0 = no stored response */
	char data[];	   /* key, then the final response */
};

struct tsx_table {
	struct event_base *base;
	struct net *net;
	size_t max;
	uint32_t timer_j_ms;
	struct hmap map;
	struct tsx *fifo_head, *fifo_tail;
	struct event *timer;
	bool closing;
	/* Scratch space for building keys, reused across calls. */
	char *kbuf;
	size_t kcap, klen;
};

static uint64_t now_ms(void)
{
	return (uint64_t)(clock_mono_ns() / CLOCK_NS_PER_MS);
}

/* ---- keys ------------------------------------------------------------------------- */

static int key_reserve(struct tsx_table *tab, size_t more)
{
	size_t want = tab->klen + more;
	char *p;

	if (want <= tab->kcap)
		return 0;
	want = want < 256 ? 256 : want * 2;
	p = realloc(tab->kbuf, want);
	if (!p)
		return ENOMEM;
	tab->kbuf = p;
	tab->kcap = want;
	return 0;
}

/* Append a length-prefixed field, so no two different field lists give the same key
 * (values may hold any byte, NUL included). */
static int key_add(struct tsx_table *tab, const void *p, size_t len, bool lower)
{
	uint32_t l32 = (uint32_t)len;
	char *dst;

	if (len > UINT32_MAX || key_reserve(tab, sizeof(l32) + len) != 0)
		return ENOMEM;
	dst = tab->kbuf + tab->klen;
	memcpy(dst, &l32, sizeof(l32));
	dst += sizeof(l32);
	if (lower) {
		for (size_t i = 0; i < len; i++) {
			char c = ((const char *)p)[i];

			dst[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
	} else if (len) {
		memcpy(dst, p, len);
	}
	tab->klen += sizeof(l32) + len;
	return 0;
}

static int key_add_str(struct tsx_table *tab, const struct sip_str *s)
{
	return key_add(tab, s->p, s->len, false);
}

/* The Request-URI as it stands in the request line (no canonicalisation: a
 * retransmission carries the same bytes). */
static struct sip_str request_uri(const struct sipmsg *m)
{
	const char *p = m->raw, *end = m->raw ? m->raw + m->raw_len : NULL, *u;

	if (!p)
		return SIP_STR_NULL;
	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	while (p < end && *p != ' ' && *p != '\r' && *p != '\n')
		p++;
	while (p < end && *p == ' ')
		p++;
	for (u = p; p < end && *p != ' ' && *p != '\r' && *p != '\n'; p++)
		;
	return (struct sip_str){.p = u, .len = (size_t)(p - u)};
}

/* The §17.2.3 key: branch + sent-by + method; the host compares case-insensitively. */
static int key_build_3261(struct tsx_table *tab, const struct sipmsg_tsx_id *id)
{
	uint8_t port[2] = {(uint8_t)(id->port >> 8), (uint8_t)id->port};
	int err = 0;

	tab->klen = 0;
	if (key_reserve(tab, 1) != 0)
		return ENOMEM;
	tab->kbuf[tab->klen++] = '3';
	err |= key_add_str(tab, &id->branch);
	err |= key_add(tab, id->host.p, id->host.len, true);
	err |= key_add(tab, port, sizeof(port), false);
	err |= key_add_str(tab, &id->method);
	return err ? ENOMEM : 0;
}

/* Build the match key of req into tab->kbuf[0..klen): §17.2.3 when the branch carries
 * the magic cookie, else the RFC 2543 fallback. */
static int key_build(struct tsx_table *tab, const struct sipmsg *m)
{
	struct sip_str uri, via = SIP_STR_NULL;
	uint8_t cseq[4] = {(uint8_t)(m->cseq >> 24), (uint8_t)(m->cseq >> 16),
			   (uint8_t)(m->cseq >> 8), (uint8_t)m->cseq};
	int err = 0;

	if (m->branch_rfc3261) {
		struct sipmsg_tsx_id id = {.method = m->method_name, .branch = m->branch,
					   .host = m->via_host, .port = m->via_port};

		return key_build_3261(tab, &id);
	}
	tab->klen = 0;
	if (key_reserve(tab, 1) != 0)
		return ENOMEM;
	/* Request-URI, To tag, From tag, Call-ID, CSeq, top Via. */
	uri = request_uri(m);
	sipmsg_hdr_values(m, SIPMSG_HDR_VIA, true, &via, 1);
	tab->kbuf[tab->klen++] = '2';
	err |= key_add_str(tab, &uri);
	err |= key_add_str(tab, &m->to_tag);
	err |= key_add_str(tab, &m->from_tag);
	err |= key_add_str(tab, &m->call_id);
	err |= key_add(tab, cseq, sizeof(cseq), false);
	err |= key_add_str(tab, &m->method_name);
	err |= key_add_str(tab, &via);
	return err ? ENOMEM : 0;
}

/* ---- table ------------------------------------------------------------------------ */

/* Send along t's flow, rebuilt from the compact peer for net_send. */
static int tsx_send(const struct tsx *t, const char *buf, size_t len)
{
	struct net_flow flow;

	flow.src.proto = (enum sip_proto)t->proto;
	flow.src.ip[0] = '\0';
	flow.src.port = 0;
	flow.src.conn_id = t->peer.conn_id;
	memcpy(&flow.peer, &t->peer.addr, t->peer.len);
	flow.peer_len = t->peer.len;
	flow.udp_fd = t->peer.udp_fd;
	flow.local_port = 0;
	return net_send(t->tab->net, &flow, t->reply_port, buf, len);
}

static void tsx_destroy(struct tsx *t)
{
	hmap_remove(&t->tab->map, &t->node);
	free(t);
}

static void tsx_timer_arm(struct tsx_table *tab, uint64_t now)
{
	uint64_t delay;
	struct timeval tv;

	if (!tab->fifo_head || evtimer_pending(tab->timer, NULL))
		return;
	delay = tab->fifo_head->expire_ms > now ? tab->fifo_head->expire_ms - now : 0;
	if (delay < TSX_TIMER_SLACK_MS)
		delay = TSX_TIMER_SLACK_MS;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(tab->timer, &tv);
}

static void tsx_timer_j(evutil_socket_t fd, short what, void *arg)
{
	struct tsx_table *tab = arg;
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	while (tab->fifo_head && tab->fifo_head->expire_ms <= now) {
		struct tsx *t = tab->fifo_head;

		tab->fifo_head = t->next;
		tsx_destroy(t);
	}
	if (!tab->fifo_head)
		tab->fifo_tail = NULL;
	tsx_timer_arm(tab, now);
}

int tsx_table_alloc(struct tsx_table **tp, struct event_base *base, struct net *net, size_t max,
		    uint32_t timer_j_ms)
{
	struct tsx_table *tab;

	*tp = NULL;
	if (!base || !net)
		return EINVAL;
	tab = calloc(1, sizeof(*tab));
	if (!tab)
		return ENOMEM;
	tab->base = base;
	tab->net = net;
	tab->max = max;
	tab->timer_j_ms = timer_j_ms ? timer_j_ms : TSX_TIMER_J_DEFAULT_MS;
	/* Buckets for the most transactions allowed, up front: doubling a table of a million
	 * transactions walks every one of them (cache misses all the way) and stalls the
	 * loop for a good fraction of a second, long enough for every client to retransmit.
	 * The array is calloc'ed (fresh zero pages from mmap), so an idle instance does not
	 * hold it in memory: pages become resident as transactions land on them. */
	if (hmap_init(&tab->map, max < TSX_BUCKETS_MAX ? max : TSX_BUCKETS_MAX) != 0) {
		free(tab);
		return ENOMEM;
	}
	tab->timer = evtimer_new(base, tsx_timer_j, tab);
	if (!tab->timer) {
		hmap_destroy(&tab->map);
		free(tab);
		return ENOMEM;
	}
	*tp = tab;
	return 0;
}

void tsx_table_free(struct tsx_table **tp)
{
	struct tsx_table *tab = *tp;
	struct hmap_node *node, *tmp;
	size_t i;

	if (!tab)
		return;
	/* Owners first, while every transaction still exists: an owner may look at its
	 * transaction while it cancels its backend work. tsx_reply refuses to
	 * run from here (closing), so the table does not change under the walk. */
	tab->closing = true;
	HMAP_FOREACH_SAFE(&tab->map, node, tmp, i)
	{
		struct tsx *t = hmap_entry(node, struct tsx, node);
		tsx_abort_h *h = t->aborth;

		if (t->completed || !h)
			continue;
		t->aborth = NULL;
		h(t, t->owner);
	}
	HMAP_FOREACH_SAFE(&tab->map, node, tmp, i)
	{
		free(hmap_entry(node, struct tsx, node));
	}
	event_free(tab->timer);
	hmap_destroy(&tab->map);
	free(tab->kbuf);
	free(tab);
	*tp = NULL;
}

/* The transaction whose key is the one just built in tab->kbuf. */
static struct tsx *tsx_find_key(struct tsx_table *tab)
{
	struct hmap_node *node;
	uint64_t h = hmap_hash(tab->kbuf, tab->klen);

	for (node = hmap_first(&tab->map, h); node; node = hmap_next(node, h)) {
		struct tsx *t = hmap_entry(node, struct tsx, node);

		if (t->key_len == tab->klen && memcmp(t->data, tab->kbuf, tab->klen) == 0)
			return t;
	}
	return NULL;
}

struct tsx *tsx_lookup(struct tsx_table *tab, const struct sipmsg *req)
{
	if (!tab || !req || req->is_response || req->method == SIP_M_ACK)
		return NULL;
	if (key_build(tab, req) != 0)
		return NULL;
	return tsx_find_key(tab);
}

struct tsx *tsx_lookup_id(struct tsx_table *tab, const struct sipmsg_tsx_id *id)
{
	if (!tab || !id || key_build_3261(tab, id) != 0)
		return NULL;
	return tsx_find_key(tab);
}

int tsx_create(struct tsx_table *tab, const struct sipmsg *req, const struct net_flow *flow,
	       struct tsx **tp)
{
	struct tsx *t;
	int err;

	*tp = NULL;
	if (!tab || !req || !flow || req->is_response || req->method == SIP_M_ACK)
		return EINVAL;
	if (tab->closing)
		return ECANCELED;
	if (flow->peer_len > sizeof(t->peer.addr))
		return EINVAL;
	if (tab->map.count >= tab->max)
		return EBUSY;
	err = key_build(tab, req);
	if (err)
		return err;
	t = malloc(sizeof(*t) + tab->klen);
	if (!t)
		return ENOMEM;
	memset(t, 0, sizeof(*t));
	t->tab = tab;
	memcpy(&t->peer.addr, &flow->peer, flow->peer_len);
	t->peer.len = flow->peer_len;
	t->peer.udp_fd = flow->udp_fd;
	t->peer.conn_id = flow->src.conn_id;
	t->proto = (uint8_t)flow->src.proto;
	t->key_len = (uint32_t)tab->klen;
	memcpy(t->data, tab->kbuf, tab->klen);
	/* §18.2.2 / RFC 3581: rport -> the source port; else the sent-by port or 5060.
	 * The address is always the source address (net_send sees to that). */
	if (flow->src.proto != SIP_PROTO_UDP || req->via_rport)
		t->reply_port = flow->src.port;
	else
		t->reply_port = req->via_port ? req->via_port : 5060;
	hmap_insert(&tab->map, &t->node, hmap_hash(t->data, t->key_len));
	*tp = t;
	return 0;
}

void tsx_retransmission(struct tsx *t)
{
	if (!t || !t->completed || t->resp_len == 0)
		return;
	tsx_send(t, t->data + t->key_len, t->resp_len);
}

/* Keep a copy of the final response inside t's own block. Returns t's new address. */
static struct tsx *tsx_store(struct tsx *t, const char *buf, size_t len)
{
	struct hmap *map = &t->tab->map;
	uint64_t h = t->node.hash;
	struct tsx *nt;

	hmap_remove(map, &t->node);
	nt = len > UINT32_MAX ? NULL : realloc(t, sizeof(*t) + t->key_len + len);
	if (nt) {
		t = nt;
		memcpy(t->data + t->key_len, buf, len);
		t->resp_len = (uint32_t)len;
	} else {
		/* Still absorb retransmissions, silently: better than a second run. */
		log_warn("no memory to keep a response for retransmissions");
	}
	hmap_insert(map, &t->node, h);
	return t;
}

/* Complete t with the final response buf (sent and kept), or with none (buf NULL: the
 * request is dropped and its retransmissions absorbed silently until Timer J). */
static int tsx_complete(struct tsx *t, const char *buf, size_t len)
{
	struct tsx_table *tab;
	uint64_t now;
	int err = 0;

	if (t->completed)
		return EALREADY;
	tab = t->tab;
	if (tab->closing)
		return ECANCELED;
	t->completed = true;
	t->aborth = NULL;
	t->owner = NULL;
	if (buf)
		err = tsx_send(t, buf, len);
	if (t->proto != SIP_PROTO_UDP) {
		/* Reliable transport: Timer J = 0, the peer does not retransmit. */
		tsx_destroy(t);
		return err;
	}
	if (buf)
		t = tsx_store(t, buf, len);
	now = now_ms();
	t->expire_ms = now + tab->timer_j_ms;
	t->next = NULL;
	if (tab->fifo_tail)
		tab->fifo_tail->next = t;
	else
		tab->fifo_head = t;
	tab->fifo_tail = t;
	tsx_timer_arm(tab, now);
	return err;
}

int tsx_reply(struct tsx *t, int status, const char *buf, size_t len)
{
	if (!t || status < 200 || status > 699 || !buf || len == 0)
		return EINVAL;
	return tsx_complete(t, buf, len);
}

int tsx_discard(struct tsx *t)
{
	if (!t)
		return EINVAL;
	return tsx_complete(t, NULL, 0);
}

int tsx_reply_provisional(struct tsx *t, const char *buf, size_t len)
{
	if (!t || !buf || len == 0)
		return EINVAL;
	if (t->completed)
		return EALREADY;
	return tsx_send(t, buf, len);
}

void tsx_set_owner(struct tsx *t, tsx_abort_h *aborth, void *owner)
{
	if (!t)
		return;
	t->aborth = aborth;
	t->owner = owner;
}

uint16_t tsx_reply_port(const struct tsx *t)
{
	return t->reply_port;
}

size_t tsx_count(const struct tsx_table *tab)
{
	return tab->map.count;
}
