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

/* What the last OPTIONS ping (RFC 3261 §11, src/ops/qualify.c) found for a binding.
 * UNKNOWN: never qualified, or refreshed since (a REGISTER that refreshes a binding resets
 * it: the flow may have moved); UNMONITORED: the instance that holds its flow does not
 * ping it. */
enum qualify_status {
	QUALIFY_UNKNOWN = 0,
	QUALIFY_OK,	     /* answered within qualify.maxms */
	QUALIFY_LAGGED,	     /* answered, slower than qualify.maxms */
	QUALIFY_UNREACHABLE, /* no answer within qualify.timeout */
	QUALIFY_UNMONITORED,
};

/* "UNKNOWN", "OK", "LAGGED", "UNREACHABLE", "UNMONITORED". */
const char *qualify_status_name(enum qualify_status s);

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
	/* Qualify state (location_qualify_set); QUALIFY_UNKNOWN with the rest 0/empty when
	 * never stored. A backend's apply result may leave it UNKNOWN (pg does). */
	enum qualify_status qualify;
	uint32_t rtt_ms;           /* round trip of the last answered ping */
	int64_t qualified_at;      /* unix seconds the state was stored, 0 = never */
	struct sip_str qualified_by; /* instance_id that stored it */
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

struct conf_section;

/* One directory: or location: section of the config file, parsed by the backend it names
 * (opaque). The registry reads `backend` and hands every other key to that backend. */
struct location_conf;

/* What a section's backend may need from the rest of the file, borrowed for the call. */
struct location_conf_env {
	const char *section;	    /* "directory" or "location", for messages */
	const char *const *domains; /* registrar.domains, lower case */
	size_t n_domains;
	/* Does a user provisioned in domain (NULL: every domain) need a password or HA1?
	 * false where auth is off for that domain or everywhere. */
	bool (*secret_required)(const char *domain, void *arg);
	void *arg;
	/* The file's top-level users: list (the memory directory's), NULL when absent. */
	const struct conf_section *users;
};

typedef void(location_apply_h)(int err, enum reg_outcome outcome,
			       const struct binding_set *result, void *arg);
typedef void(location_fetch_h)(int err, const struct binding_set *result, void *arg);
/* Called once per binding while iterating (b != NULL), then once with b == NULL and the
 * final err to say the iteration is over. */
typedef void(location_iter_h)(int err, const struct binding *b, void *arg);
/* user == NULL: no such user (not an error). */
typedef void(directory_find_h)(int err, const struct dir_user *user, void *arg);
/* The end of an operation that returns nothing but its error. */
typedef void(location_done_h)(int err, void *arg);
/* Called once per user (u != NULL), then once with u == NULL and the final err. */
typedef void(directory_iter_h)(int err, const struct dir_user *u, void *arg);

/* How directory_user_put treats an existing user. */
enum dir_put {
	DIR_PUT_CREATE, /* EEXIST when the user (or one of its aliases) exists */
	DIR_PUT_UPDATE, /* ENOENT when it does not: everything is replaced */
};

/* Names of the compiled-in backends, NULL-terminated; for error messages and --help. */
const char *const *location_backend_names(void);

/* Parse a section (sec NULL: the section is absent, backend "memory"): `backend` picks the
 * backend (an unknown name is refused naming the known ones), which reads the other keys.
 * Returns 0 or EINVAL/ENOMEM with the message written by the config reader. *lcp is owned
 * by the caller: location_conf_free(). */
int location_conf_parse(struct location_conf **lcp, const struct conf_section *sec,
			const struct location_conf_env *env);
void location_conf_free(struct location_conf **lcp);
/* The backend's registry name ("memory", "pg"). */
const char *location_conf_backend(const struct location_conf *lc);
/* Does the store live in the process that opens it (memory)? A tool then asks the running
 * daemon instead of opening its own, empty, copy. */
bool location_conf_in_process(const struct location_conf *lc);
/* Do a and b name the same store (one instance can serve both)? */
bool location_conf_same_store(const struct location_conf *a, const struct location_conf *b);

/* Open a backend instance from its parsed section; instance_id names this sipregd to the
 * backend (leases, logs). Returns 0 or the backend's error. *locp is owned by the caller
 * and freed with location_close(). */
int location_open(struct location **locp, const struct location_conf *conf,
		  struct event_base *base, const char *instance_id);
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
/* Every live binding, for listing (sipregctl, the operator's view). */
int location_iterate(struct location *loc, int64_t now, location_iter_h *cb, void *arg,
		     struct location_op **opp);
/* Look a user up by user part and domain (raw bytes). */
int directory_find_user(struct location *loc, const struct sip_str *user,
			const struct sip_str *domain, directory_find_h *cb, void *arg,
			struct location_op **opp);

/* Provisioning (sipregctl). A backend whose directory is written elsewhere (the memory
 * backend's is the YAML file) answers ENOTSUP; so does the registry for a backend that
 * lacks the operation. */
/* Store user u (every field as given; a password is kept as its HA1s where the backend
 * stores no clear password). */
int directory_user_put(struct location *loc, const struct dir_user *u, enum dir_put mode,
		       location_done_h *cb, void *arg, struct location_op **opp);
/* Remove a user and its aliases; ENOENT when there is none. */
int directory_user_del(struct location *loc, const struct sip_str *user,
		       const struct sip_str *domain, location_done_h *cb, void *arg,
		       struct location_op **opp);
/* Every user, in no promised order. */
int directory_user_iter(struct location *loc, directory_iter_h *cb, void *arg,
			struct location_op **opp);
/* Remove the bindings of aor (contact NULL: all of them; else the one whose key, the
 * §19.1.4 comparison key, is contact). Not ordered by CSeq: the operator's word wins. */
int location_unbind(struct location *loc, const struct sip_str *aor,
		    const struct sip_str *contact, location_done_h *cb, void *arg,
		    struct location_op **opp);

/* A qualify result for one binding, location_qualify_set(). */
struct qualify_update {
	struct sip_str aor;
	struct sip_str key;        /* the binding's comparison key */
	enum qualify_status status;
	uint32_t rtt_ms;
	int64_t at;                /* unix seconds: becomes qualified_at */
	/* 0: store unconditionally. Else a claim on a binding another instance registered:
	 * store only when this instance stored the last state, or when the last state (or the
	 * registration, if never qualified) is older than claim_before (unix seconds). Two
	 * instances claiming the same stale binding: one wins, the other gets ENOENT. */
	int64_t claim_before;
};

/* Store the qualify state of the live binding (u->aor, u->key), recording this instance
 * (the instance_id given to location_open) as qualified_by; its other fields do not
 * change. ENOENT when there is no such live binding or the claim was lost; ENOTSUP when
 * the backend keeps no qualify state. */
int location_qualify_set(struct location *loc, const struct qualify_update *u,
			 location_done_h *cb, void *arg, struct location_op **opp);
/* SIGHUP: hand loc what may change at run time in a freshly parsed section of its
 * backend (the memory directory: its users), applied at once. EINVAL when conf names
 * another backend, ENOTSUP when the backend reloads nothing (pg: it reads the database). */
int location_reload(struct location *loc, const struct location_conf *conf);

/* Forget a pending operation: its callback will not be called. Sets *opp to NULL. */
void location_op_cancel(struct location_op **opp);

/* Number of operations started and not yet completed (for overload control). */
size_t location_pending(const struct location *loc);
/* The backend's standing delay in milliseconds (overload control): the shortest time an
 * apply or fetch took among those that completed in the last 100 ms window; when none
 * did, how long the oldest request operation (find, fetch, apply; not
 * listings) still in flight has waited; 0 when none is. */
uint32_t location_delay_ms(struct location *loc);

#endif
