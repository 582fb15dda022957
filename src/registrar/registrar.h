/* RFC 3261 §10.3 as pure decisions: everything a REGISTER can be refused for before the
 * stored state is consulted, the change-set for the location service, and the 200 OK.
 * No I/O here: server.c drives the directory, auth and location calls. */
#ifndef SIPREG_REGISTRAR_H
#define SIPREG_REGISTRAR_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "sip/msg.h"
#include "sip/register.h"
#include "sipreg/location.h"
#include "sip/resp.h"

#define REGISTRAR_AOR_MAX 512

/* The outcome of checking one REGISTER. When status is 0 the request is acceptable so far
 * and req is the change-set to apply (its strings point into the message and into this
 * struct: keep both alive while req is used). */
struct reg_decision {
	int status;                 /* 0 = go on; else the SIP status to answer */
	const char *reason;         /* reason phrase for status */
	const char *unsupported;    /* 420: option-tags for the Unsupported header */
	bool is_query;              /* no Contact: only fetch the bindings */
	bool path_supported;        /* UA sent Supported: path (return Path in 200) */
	char aor_buf[REGISTRAR_AOR_MAX];
	struct sip_str user;        /* AOR user part (canonical escaped), in aor_buf */
	struct sip_str domain;      /* AOR domain, in aor_buf */
	struct reg_request req;
	struct reg_change *changes; /* owned */
	char *keys;                 /* owned storage for the changes' keys */
	char *path;                 /* owned joined Path */
};

/* Check the REGISTER req (read by sip_register_read) against cfg (steps 1, 2, 5, 6 and the per-Contact part of 7) at time now.
 * Returns 0 (d filled; look at d->status) or ENOMEM. Call registrar_decision_clear() in
 * every case. */
int registrar_check(const struct registrar_conf *cfg, const struct sip_register *req,
		    int64_t now, struct reg_decision *d);
void registrar_decision_clear(struct reg_decision *d);

/* RFC 3261 §8.2.2.3 for requests other than REGISTER: true when Require names an
 * option-tag we do not support; buf then holds the comma-separated list for Unsupported. */
bool registrar_require_unsupported(const struct sip_list *require, char *buf, size_t len);

/* Status and reason for a backend refusal (out-of-order CSeq, too many contacts). */
int registrar_outcome_status(const struct registrar_conf *cfg, enum reg_outcome outcome,
			     const char **reason_r);

/* The 200 OK body of headers after sipresp_start(): one Contact per live binding with
 * ;expires= (remaining at now) and its q, Path when supported, and Date. */
void registrar_reply_ok(struct sipresp *r, const struct reg_decision *d,
			const struct binding_set *set, int64_t now);

#endif
