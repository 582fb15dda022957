/* What a location-service backend implements. Callers use location.h; only backends and
 * src/location.c include this file. One backend = one folder under backends/ exporting one
 * `const struct location_backend`.
 *
 * Contract, shared by every backend (the backend conformance suite checks it):
 * - every operation completes by calling its callback exactly once, never before the
 *   operation function returned (defer through the event loop), with the borrowed data
 *   valid only during the callback;
 * - apply is atomic: either the whole change-set is stored and the callback gets REG_OK and
 *   the resulting live bindings, or nothing changed (refusal outcome or err);
 * - expired bindings (expires_at <= now) are never returned;
 * - close() completes every pending operation with ECANCELED before returning. */
#ifndef SIPREG_LOCATION_BACKEND_H
#define SIPREG_LOCATION_BACKEND_H

#include "sipreg/location.h"

/* The completion callback of one operation, whichever kind it is: backends keep their
 * pending operations in one queue and answer each through the member of its kind. */
union location_cb {
	location_apply_h *apply;
	location_fetch_h *fetch;
	location_sweep_h *sweep;
	location_iter_h *iterate;
	directory_find_h *find_user;
};

struct location_backend {
	const char *name;
	/* Create the backend state (*bep). May start connecting asynchronously; operations
	 * issued before it is ready queue or fail with EAGAIN, as the backend documents. */
	int (*open)(void **bep, const struct location_conf *conf, struct event_base *base);
	void (*close)(void *be);
	int (*apply)(void *be, const struct reg_request *req, location_apply_h *cb, void *arg);
	int (*fetch)(void *be, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		     void *arg);
	int (*sweep)(void *be, int64_t now, location_sweep_h *cb, void *arg);
	int (*iterate)(void *be, int64_t now, location_iter_h *cb, void *arg);
	int (*find_user)(void *be, const struct sip_str *user, const struct sip_str *domain,
			 directory_find_h *cb, void *arg);
};

extern const struct location_backend location_backend_memory;
#ifdef HAVE_PG
extern const struct location_backend location_backend_pg;
#endif

#endif
