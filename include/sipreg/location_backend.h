/* What a location-service backend implements. Callers use location.h; only backends and
 * src/location/registry.c include this file. One backend = one folder under backends/ exporting one
 * `const struct location_backend`.
 *
 * Contract, shared by every backend (the backend conformance suite checks it):
 * - every operation completes by calling its callback exactly once, never before the
 *   operation function returned (defer through the event loop), with the borrowed data
 *   valid only during the callback;
 * - apply is atomic: either the whole change-set is stored and the callback gets REG_OK and
 *   the resulting live bindings, or nothing changed (refusal outcome or err);
 * - expired bindings (expires_at <= now) are never returned, and removing them is the
 *   backend's own job (nothing calls it to sweep);
 * - close() completes every pending operation with ECANCELED before returning. */
#ifndef SIPREG_LOCATION_BACKEND_H
#define SIPREG_LOCATION_BACKEND_H

#include "sipreg/conf.h"
#include "sipreg/location.h"

/* The completion callback of one operation, whichever kind it is: backends keep their
 * pending operations in one queue and answer each through the member of its kind. */
union location_cb {
	location_apply_h *apply;
	location_fetch_h *fetch;
	location_iter_h *iterate;
	directory_find_h *find_user;
	location_done_h *done;
	directory_iter_h *user_iter;
};

struct location_backend {
	const char *name;
	bool reads_users; /* its directory reads the top-level users: list */
	bool in_process;  /* its store lives in the daemon's memory: tools ask the daemon */
	/* Read the backend's keys of its section (conf.h; conf_keys() first: `backend` is
	 * among the keys and already read) into *confp, freed by conf_free. sec is NULL when
	 * the file has no such section. Errors are reported through conf.h. */
	int (*configure)(void **confp, const struct conf_section *sec,
			 const struct location_conf_env *env);
	void (*conf_free)(void *conf);
	/* Do two configurations name the same store? NULL: never. */
	bool (*same_store)(const void *a, const void *b);
	/* Create the backend state (*bep) from a configure() result. May start connecting
	 * asynchronously; operations issued before it is ready queue or fail with EAGAIN, as
	 * the backend documents. */
	int (*open)(void **bep, const void *conf, struct event_base *base,
		    const char *instance_id);
	void (*close)(void *be);
	int (*apply)(void *be, const struct reg_request *req, location_apply_h *cb, void *arg);
	int (*fetch)(void *be, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		     void *arg);
	int (*iterate)(void *be, int64_t now, location_iter_h *cb, void *arg);
	int (*find_user)(void *be, const struct sip_str *user, const struct sip_str *domain,
			 directory_find_h *cb, void *arg);
	/* Provisioning, optional (NULL: ENOTSUP); location.h says what each does. */
	int (*user_put)(void *be, const struct dir_user *u, enum dir_put mode,
			location_done_h *cb, void *arg);
	int (*user_del)(void *be, const struct sip_str *user, const struct sip_str *domain,
			location_done_h *cb, void *arg);
	int (*user_iter)(void *be, directory_iter_h *cb, void *arg);
	int (*unbind)(void *be, const struct sip_str *aor, const struct sip_str *contact,
		      location_done_h *cb, void *arg);
	/* Qualify state, optional (NULL: ENOTSUP); see location_qualify_set. */
	int (*qualify_set)(void *be, const struct qualify_update *u, location_done_h *cb,
			   void *arg);
	/* SIGHUP, optional (NULL: ENOTSUP): take what may change at run time from a fresh
	 * configure() result of the same backend, at once, whole or not at all (the memory
	 * backend: its users). conf is borrowed for the call. Never called from inside one
	 * of the backend's own callbacks. */
	int (*reload)(void *be, const void *conf);
};

/* The configure() result behind lc, for a backend's own tools (sipregctl reaching the
 * database a config file names); NULL when lc is not of backend. Borrowed from lc. */
const void *location_conf_of(const struct location_conf *lc, const struct location_backend *backend);

#endif
