/* The per-IP SIP trace: a short list of addresses kept in inet_ntop form, the form the
 * transports write a source in (sock.c), so a message is matched by one string
 * comparison per traced address, and nothing at all is compared while the list is empty. */
#include "ops/debug.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sipreg/log.h"

struct debug {
	char ip[DEBUG_IP_MAX][INET6_ADDRSTRLEN];
	size_t n;
};

int debug_alloc(struct debug **dp)
{
	*dp = calloc(1, sizeof(**dp));
	return *dp ? 0 : ENOMEM;
}

void debug_free(struct debug **dp)
{
	free(*dp);
	*dp = NULL;
}

/* addr in the form a sip_source carries; false when it is no numeric address. */
static bool debug_normalise(const char *addr, char *out, size_t cap)
{
	unsigned char bin[sizeof(struct in6_addr)];
	int af = strchr(addr, ':') ? AF_INET6 : AF_INET;

	return inet_pton(af, addr, bin) == 1 && inet_ntop(af, bin, out, (socklen_t)cap);
}

int debug_ip_set(struct debug *d, const char *addr, bool on)
{
	char ip[INET6_ADDRSTRLEN];
	size_t i;

	if (!d || !addr || !debug_normalise(addr, ip, sizeof(ip)))
		return EINVAL;
	for (i = 0; i < d->n && strcmp(d->ip[i], ip) != 0; i++)
		;
	if (on) {
		if (i < d->n)
			return 0;
		if (d->n == DEBUG_IP_MAX)
			return ENOSPC;
		memcpy(d->ip[d->n++], ip, sizeof(ip));
		return 0;
	}
	if (i == d->n)
		return 0;
	memmove(d->ip[i], d->ip[i + 1], (d->n - i - 1) * sizeof(d->ip[0]));
	d->n--;
	return 0;
}

void debug_ip_clear(struct debug *d)
{
	d->n = 0;
}

size_t debug_ip_count(const struct debug *d)
{
	return d->n;
}

const char *debug_ip_at(const struct debug *d, size_t i)
{
	return i < d->n ? d->ip[i] : NULL;
}

void debug_trace(bool out, const struct sip_source *peer, uint16_t port, const char *buf,
		 size_t len, void *arg)
{
	struct debug *d = arg;
	char head[128];
	size_t i;

	if (!d || d->n == 0)
		return;
	for (i = 0; i < d->n && strcmp(d->ip[i], peer->ip) != 0; i++)
		;
	if (i == d->n)
		return;
	snprintf(head, sizeof(head),
		 "%s %s %s %s%s%s:%u (%zu bytes): ", sip_proto_name(peer->proto),
		 out ? "out" : "in", out ? "to" : "from", strchr(peer->ip, ':') ? "[" : "",
		 peer->ip, strchr(peer->ip, ':') ? "]" : "", port, len);
	log_trace(head, buf, len);
}
