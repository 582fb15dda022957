/* Server transactions (RFC 3261 §17.2.2, non-INVITE): absorb retransmissions and replay
 * the stored final response until Timer J fires (64*T1 on UDP, at once on TCP). */
#ifndef SIPREG_TSX_H
#define SIPREG_TSX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net.h"
#include "sip/msg.h"

struct event_base;
struct tsx_table;
struct tsx;

/* The owner of a transaction still being processed (the registrar's pending request).
 * Called when the table drops the transaction before a final response (shutdown), so
 * the owner can cancel its backend operation. */
typedef void(tsx_abort_h)(struct tsx *t, void *owner);

/* max: live transactions allowed (tsx_create returns EBUSY beyond). timer_j_ms: Timer J
 * for unreliable transports (0 = the default, 64*T1 = 32000). *tp: tsx_table_free(). */
int tsx_table_alloc(struct tsx_table **tp, struct event_base *base, struct net *net,
		    size_t max, uint32_t timer_j_ms);
/* Aborts pending transactions (their abort handler runs) and frees everything. */
void tsx_table_free(struct tsx_table **tp);

/* Find the transaction req belongs to: branch + sent-by + method (CANCEL/ACK aside), or
 * the RFC 2543 key when the branch lacks the magic cookie. NULL when none, and always
 * for ACK (no non-INVITE transaction takes an ACK: the server absorbs it). */
struct tsx *tsx_lookup(struct tsx_table *tab, const struct sipmsg *req);
/* The same for an id read from raw bytes (sipmsg_peek_tsx_id), before any parse. */
struct tsx *tsx_lookup_id(struct tsx_table *tab, const struct sipmsg_tsx_id *id);
/* Create a transaction for req, arrived on flow. Returns 0, EBUSY (table full: answer 503
 * statelessly), ENOMEM, or EINVAL for an ACK or a response. The table owns *tp. */
int tsx_create(struct tsx_table *tab, const struct sipmsg *req, const struct net_flow *flow,
	       struct tsx **tp);
/* Handle a retransmission of the request of t: replays the final response if there is
 * one, otherwise does nothing (still processing). */
void tsx_retransmission(struct tsx *t);
/* Send the final response (status >= 200) and keep a copy for retransmissions; the
 * table takes ownership of nothing (buf is copied). The transaction then lives until
 * Timer J. Returns 0 or an errno from sending (the transaction still completes).
 * t must not be used after this call: a reliable transport frees it at once, and the
 * stored response may move it; tsx_lookup finds it again. */
int tsx_reply(struct tsx *t, int status, const char *buf, size_t len);
/* Finish t without answering (a request deliberately dropped, e.g. a banned source):
 * its retransmissions are absorbed silently until Timer J. t must not be used after. */
int tsx_discard(struct tsx *t);
/* Send a provisional response (not stored). */
int tsx_reply_provisional(struct tsx *t, const char *buf, size_t len);
void tsx_set_owner(struct tsx *t, tsx_abort_h *aborth, void *owner);
/* Where responses for t go on UDP (§18.2.2 / RFC 3581). */
uint16_t tsx_reply_port(const struct tsx *t);
size_t tsx_count(const struct tsx_table *tab);

#endif
