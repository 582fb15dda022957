/* The per-IP SIP trace (`sipregctl debug ip ADDR on|off`, `debug.ip:` in the config): the
 * addresses whose SIP messages are logged in full, and the hook the transports call for
 * every message received or sent. */
#ifndef SIPREG_OPS_DEBUG_H
#define SIPREG_OPS_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/types.h"

/* At most this many addresses are traced at once: a trace is for looking at one phone,
 * and every message is compared with each of them. */
#define DEBUG_IP_MAX 32

struct debug;

/* An empty set. *dp: debug_free(). */
int debug_alloc(struct debug **dp);
void debug_free(struct debug **dp);

/* Trace (on) or stop tracing (off) addr, a numeric IPv4 or IPv6 address in any form
 * inet_pton takes. Returns 0 (also for turning off an address not traced), EINVAL for
 * anything that is not a numeric address, ENOSPC when DEBUG_IP_MAX are traced. */
int debug_ip_set(struct debug *d, const char *addr, bool on);
/* Stop tracing every address. */
void debug_ip_clear(struct debug *d);
size_t debug_ip_count(const struct debug *d);
/* The i-th traced address in inet_ntop form; borrowed until the set changes. */
const char *debug_ip_at(const struct debug *d, size_t i);

/* The transports' hook (net_trace_h, arg = the struct debug): out says whether the message
 * was sent to peer (port: the port it went to) or received from it. A message of a
 * traced address becomes one log record (log_trace):
 *   trace: udp in from 127.0.0.1:5062 (312 bytes): REGISTER sip:...\x0d\x0a...
 *   trace: udp out to 127.0.0.1:5062 (298 bytes): SIP/2.0 200 OK\x0d\x0a...
 * Costs one comparison when nothing is traced. */
void debug_trace(bool out, const struct sip_source *peer, uint16_t port, const char *buf,
		 size_t len, void *arg);

#endif
