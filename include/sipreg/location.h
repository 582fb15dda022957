/* The location service as the registrar sees it: users (the directory) and bindings
 * (address-of-record -> contacts), behind one asynchronous interface whatever the backend.
 *
 * DESIGN: the registrar never reads, decides and writes binding by binding. It hands the
 * backend one change-set per REGISTER (struct reg_request) and the backend applies RFC 3261
 * §10.3 step 7 atomically and returns the resulting binding set. That keeps a REGISTER at
 * one round trip and makes concurrent REGISTERs for one AOR on different instances safe.
 * Every call completes through its callback exactly once, never before the call returns
 * (backends defer through the event loop), unless the call itself returns an error.
 * A caller that goes away first cancels its operation with location_op_cancel(); the
 * callback is then never invoked. */
#ifndef SIPREG_LOCATION_H
#define SIPREG_LOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/types.h"

struct event_base;
struct location;
struct location_op;

/* q-value of a contact in thousandths; Q_NONE when the Contact carried no q. */
#define Q_NONE (-1)

/* One Contact of a REGISTER, validated by the registrar. */
struct reg_change {
	struct sip_str contact;  /* URI as received, raw escaped bytes */
	struct sip_str key;      /* canonical comparison key (RFC 3261 §19.1.4); bindings
	                          * of one AOR are unique by key */
	uint32_t expires;        /* seconds, already clamped; 0 = remove this binding */
	int16_t q;               /* 0..1000 or Q_NONE */
	struct sip_str instance; /* +sip.instance value (RFC 5626), may be empty */
	uint32_t reg_id;         /* reg-id (RFC 5626), 0 = none */
};

/* Everything step 7 of RFC 3261 §10.3 needs, for one REGISTER. */
struct reg_request {
	struct sip_str aor;        /* canonical "user@domain" (user escaped canonically) */
	struct sip_str call_id;
	uint32_t cseq;
	bool wildcard;             /* Contact: * with Expires: 0: remove all bindings */
	const struct reg_change *changes;
	size_t n_changes;
	uint32_t max_contacts;     /* 0 = unlimited */
	struct sip_str path;       /* Path header values joined by ",", may be empty */
	struct sip_str user_agent;
	struct sip_source source;  /* flow the REGISTER arrived on */
	struct sip_str instance_id;/* the sipregd instance taking it */
	int64_t now;               /* unix seconds; the reference for expires */
};

/* Why a change-set was refused by the stored state. */
enum reg_outcome {
	REG_OK = 0,
	REG_OUT_OF_ORDER,     /* same Call-ID with a CSeq not above the stored one */
	REG_TOO_MANY_CONTACTS /* result would exceed max_contacts */
};

/* One stored binding. All strings are borrowed from the backend for the callback. */
struct binding {
	struct sip_str aor;
	struct sip_str contact;
	struct sip_str key;
	int64_t expires_at;        /* unix seconds */
	int16_t q;                 /* 0..1000 or Q_NONE */
	struct sip_str call_id;
	uint32_t cseq;
	struct sip_str path;
	struct sip_str instance;
	uint32_t reg_id;
	struct sip_str user_agent;
	struct sip_source source;
	struct sip_str registered_by; /* instance_id of the sipregd that stored it */
	int64_t updated_at;        /* unix seconds */
};

struct binding_set {
	const struct binding *v;
	size_t n;
};

/* A user of the directory. Strings are borrowed for the callback. Secrets are hex HA1
 * values or a clear password; a backend fills what it has, empty means "not known". */
struct dir_user {
	struct sip_str username;
	struct sip_str domain;
	struct sip_str ha1_md5;     /* 32 hex digits of MD5(user:realm:password) */
	struct sip_str ha1_sha256;  /* 64 hex digits of SHA-256(user:realm:password) */
	struct sip_str password;    /* clear password, when the directory keeps one */
	bool enabled;
	bool auth_off;              /* this user registers without digest auth */
	uint32_t max_contacts;      /* 0 = use the registrar default */
	const struct sip_str *aliases; /* other AORs ("user@domain") this user may register */
	size_t n_aliases;
};

/* Backend settings from the config (location: or directory: section). */
struct location_conf {
	const char *backend;       /* registry name: "memory", "pg", ... */
	const char *conninfo;      /* backend specific, may be NULL */
	unsigned pool;             /* connections, 0 = backend default */
	unsigned timeout_ms;       /* per query, 0 = backend default */
	bool migrate;              /* pg: apply the schema migrations at open (start-up) */
	const struct conf_user *users; /* memory directory: users from the YAML */
	size_t n_users;
	const char *instance_id;
};

/* A provisioned user as written in the YAML config (memory directory). */
struct conf_user {
	const char *user;
	const char *domain;       /* NULL = any configured domain */
	const char *password;     /* NULL when HA1s are given */
	const char *ha1_md5;
	const char *ha1_sha256;
	bool auth_off;
	bool enabled;
	uint32_t max_contacts;
	const char *const *aliases;
	size_t n_aliases;
};

typedef void(location_apply_h)(int err, enum reg_outcome outcome,
			       const struct binding_set *result, void *arg);
typedef void(location_fetch_h)(int err, const struct binding_set *result, void *arg);
typedef void(location_sweep_h)(int err, size_t n_removed, void *arg);
/* Called once per binding while iterating (b != NULL), then once with b == NULL and the
 * final err to say the iteration is over. */
typedef void(location_iter_h)(int err, const struct binding *b, void *arg);
/* user == NULL: no such user (not an error). */
typedef void(directory_find_h)(int err, const struct dir_user *user, void *arg);

/* Names of the compiled-in backends, NULL-terminated; for error messages and --help. */
const char *const *location_backend_names(void);

/* Open a backend instance by name. Returns 0, ENOENT for an unknown backend name (the
 * log names the known ones), or the backend's error. *locp is owned by the caller and
 * freed with location_close(). */
int location_open(struct location **locp, const struct location_conf *conf,
		  struct event_base *base);
/* Close the instance; pending operations complete with ECANCELED first. Sets *locp to
 * NULL. */
void location_close(struct location **locp);

/* Apply one REGISTER change-set atomically; cb gets the resulting live bindings of the
 * AOR. err != 0 means nothing is known to be stored (answer 503). opp (may be NULL)
 * receives a handle for location_op_cancel(), valid until the callback ran. */
int location_apply(struct location *loc, const struct reg_request *req,
		   location_apply_h *cb, void *arg, struct location_op **opp);
/* Live (unexpired at now) bindings of one AOR. */
int location_fetch(struct location *loc, const struct sip_str *aor, int64_t now,
		   location_fetch_h *cb, void *arg, struct location_op **opp);
/* Remove bindings that expired before now. */
int location_sweep(struct location *loc, int64_t now, location_sweep_h *cb, void *arg,
		   struct location_op **opp);
/* Every live binding, for listing (sipregctl, the operator's view). */
int location_iterate(struct location *loc, int64_t now, location_iter_h *cb, void *arg,
		     struct location_op **opp);
/* Look a user up by user part and domain (raw bytes). */
int directory_find_user(struct location *loc, const struct sip_str *user,
			const struct sip_str *domain, directory_find_h *cb, void *arg,
			struct location_op **opp);

/* Forget a pending operation: its callback will not be called. Sets *opp to NULL. */
void location_op_cancel(struct location_op **opp);

/* Number of operations started and not yet completed (for overload control). */
size_t location_pending(const struct location *loc);
/* The backend's standing delay in milliseconds (overload control): the shortest time an
 * apply or fetch took among those that completed in the last 100 ms window; when none
 * did, how long the oldest request operation (find, fetch, apply; not sweeps or
 * listings) still in flight has waited; 0 when none is. */
uint32_t location_delay_ms(struct location *loc);

#endif
