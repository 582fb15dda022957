/* Inside the ldap backend (backends/ldap/): the types and the functions its files share.
 * ldap.c holds the vtable, op.c the operation records, conn.c the connections, mirror.c
 * the users' copy, users.c provisioning, bindings.c the binding entries, codec.c and
 * escape.c what goes into and comes out of LDAP messages. Nothing outside this folder
 * includes this. */
#ifndef SIPREG_BACKEND_LDAP_INTERNAL_H
#define SIPREG_BACKEND_LDAP_INTERNAL_H

#include <errno.h>
#include <event2/event.h>
#include <lber.h>
#include <ldap.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include "ldap_conf.h"
#include "sipreg/clock.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "sipreg/location_backend.h"

#define LB_BACKOFF_MIN_MS 100u
#define LB_BACKOFF_MAX_MS 5000u
#define LB_QUEUE_MAX	  4096u /* ops waiting for a connection */
#define LB_NUM_MAX	  24	/* digits of an int64 and a sign */
/* Entries per page of a listing (RFC 2696): below slapd's default size limit of 500 for
 * binds other than the rootdn, so no page is ever cut short by it. */
#define LB_PAGE_SIZE	  250
/* Entries one sweep search asks for: one batch, deleted before the next is read. */
/* Aliases one user_put writes at most (as many as a listed pg user shows). */
#define LB_ALIASES_MAX	  256u
#define LB_SWEEP_BATCH	  250u
/* Batches in a row while each came back full, before waiting sweep_s again. */
#define LB_SWEEP_REPEAT	  40u

struct lb_be;

enum lb_state { LC_DOWN, LC_CONNECTING, LC_BINDING, LC_UP };

struct lb_conn {
	struct lb_be *be;
	LDAP *ld;
	enum lb_state state;
	bool is_sync;
	int fd;
	int msgid; /* the bind, or (sync) the sync search */
	struct event *rev, *wev, *tmo; /* readable, writable while connecting, timer */
	size_t uri_idx;
	uint32_t backoff_ms;
	bool broken; /* failure noticed inside a call: handled from the timer */
	size_t n_ops; /* ops holding this connection */
};

enum lb_kind {
	LB_APPLY,
	LB_FETCH,
	LB_ITERATE,
	LB_FIND,
	LB_PUT,
	LB_DEL,
	LB_USER_ITER,
	LB_UNBIND,
	LB_SWEEP, /* the backend's own: expired bindings and empty AOR entries */
};

enum lb_step {
	ST_IDLE,
	ST_READ,     /* apply: the AOR's subtree; fetch/iterate/unbind: the bindings */
	ST_CLAIM,    /* apply: raise sipregVersion under assertion (or add the AOR entry) */
	ST_WRITE,    /* apply: one binding entry; unbind: one delete */
	ST_COMMIT,   /* apply: sipregCommitted = the claimed version */
	ST_LOOKUP,   /* put/del: the user's entry */
	ST_PUT,	     /* put: add or modify; del: delete */
	ST_ALIASES,  /* put: does another entry hold one of the aliases? */
	ST_READBACK, /* put: read the entry back into the mirror */
	ST_SWEEP_BINDINGS, /* sweep: a batch of expired binding entries */
	ST_SWEEP_AORS,	   /* sweep: a batch of AOR entries without bindings */
	ST_SWEEP_DEL,	   /* sweep: one delete under assertion */
};

/* A binding owned by an op (strings malloc'd). */
struct lb_stored {
	struct binding b;
	char *dn;
	bool live, drop, keep;
};

/* One write of an apply. */
enum lb_wkind { W_ADD, W_MODIFY, W_DELETE };

struct lb_write {
	enum lb_wkind kind;
	size_t change; /* W_ADD/W_MODIFY: index into changes */
	char *dn;
	int64_t version, committed; /* sweep of an AOR entry: the values it was read with */
};

struct lb_op {
	struct lb_op *prev, *next; /* every op of the backend */
	struct lb_op *qnext;	   /* waiting for a connection or for the mirror */
	bool queued, dir_waiting;
	struct lb_be *be;
	enum lb_kind kind;
	union location_cb cb;
	void *arg;
	struct event *ev; /* deadline, retry and deferred completion */
	int64_t deadline_ns;
	bool finishing, retry;
	int fin_err;
	struct lb_conn *conn;
	int msgid;
	enum lb_step step;
	int64_t now;

	/* request copies */
	struct sip_str aor, s1, s2; /* aor; user/domain or contact key */
	char *aor_dn;
	struct reg_request req; /* apply: strings owned below */
	struct reg_change *changes;
	bool *superseded;

	/* apply state */
	struct lb_stored *stored;
	size_t n_stored, cap_stored;
	bool aor_exists;
	int64_t version, committed, claimed_at;
	struct lb_write *writes;
	size_t n_writes, next_write;
	enum reg_outcome outcome;
	unsigned attempts;

	/* put/del */
	struct dir_user user;
	struct sip_str *aliases;
	enum dir_put mode;
	char *dn;
	bool has_sipreg_class, alias_clash;
	size_t found;

	/* iterate: the paged results cookie (RFC 2696), libldap's memory */
	struct berval cookie;
	/* sweep: this batch came back full (more may wait) */
	bool full;
};

struct lb_alias {
	struct hmap_node node;
	struct lb_user *owner;
	struct sip_str s;
};

struct lb_user {
	struct hmap_node by_name, by_uuid;
	struct sip_str uuid, name, password;
	char ha1_md5[65], ha1_sha256[65];
	bool enabled, auth_off;
	uint32_t max_contacts;
	char **domains; /* lower case; none: every domain */
	size_t n_domains;
	struct lb_alias *aliases;
	struct sip_str *alias_strs;
	size_t n_aliases;
	uint64_t gen;
};

struct lb_be {
	const struct ldap_conf *conf;
	struct event_base *base;
	char *instance_id;
	struct lb_conn *conns; /* pool request connections, then the sync one */
	size_t n_conns, rr;
	struct lb_op *ops;		/* every live op */
	struct lb_op *qhead, *qtail;	/* waiting for a connection */
	size_t n_queued;
	struct lb_op *dir_wait;		/* find/user_iter waiting for the first load */
	struct hmap users, uuids, aliases;
	uint64_t gen;
	bool dir_ready, sync_refused, refreshing;
	bool closing;
	bool *alive; /* set while a callback may close the backend */
	struct log_limit ll_conn, ll_sweep;
	struct event *sweep_ev; /* the next sweep (location backends only) */
	struct lb_op *sweep;	/* the sweep in progress */
	unsigned sweep_rounds;	/* full batches in a row */
};

static const struct sip_str empty_str = {.p = "", .len = 0};

/* A modification list under construction: values live in the builder until it is freed. */
struct mods {
	LDAPMod *v[32];
	LDAPMod m[32];
	struct berval bv[32][2];
	struct berval *bvp[32][4];
	struct berval bv_extra;
	char num[32][LB_NUM_MAX];
	size_t n;
};

/* ---- escape.c ----------------------------------------------------------- */

int lb_str_dup(struct sip_str *dst, const void *p, size_t len);
void lb_str_free(struct sip_str *s);
bool lb_utf8_valid(const char *p, size_t len);
/* An RFC 4514 attribute value for a DN: the special characters, a leading space or '#', a
 * trailing space and every control byte become \XX. Client bytes must be valid UTF-8
 * without NUL (LDAP strings are UTF-8); anything else is EINVAL. *outp is malloc'd. */
int lb_dn_escape(const struct sip_str *v, char **outp);
/* An RFC 4515 assertion value (NUL, '*', '(', ')', '\' as \XX): malloc'd. */
int lb_filter_escape(const struct sip_str *v, char **outp);
char *lb_str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- codec.c ------------------------------------------------------------ */

int64_t lb_bv_int(const struct berval *bv, int64_t dflt);
/* The first value of attr in entry e, or NULL; *vals_r to free with ldap_value_free_len. */
struct berval *lb_first_value(LDAP *ld, LDAPMessage *e, const char *attr,
				  struct berval ***vals_r);
/* The 16 bytes of a textual entryUUID (8-4-4-4-12 hex), as the sync control carries it. */
bool lb_uuid_parse(const struct berval *bv, unsigned char out[16]);
int lb_attr_str(LDAP *ld, LDAPMessage *e, const char *attr, struct sip_str *dst);
int64_t lb_attr_int(LDAP *ld, LDAPMessage *e, const char *attr, int64_t dflt);
bool lb_entry_is(LDAP *ld, LDAPMessage *e, const char *cls);
int lb_send_search(struct lb_op *op, const char *base, int scope, const char *filter,
		       const char *const *attrs);
/* lb_send_search with server controls (borrowed) and a size limit (0: the server's). */
int lb_send_search_ext(struct lb_op *op, const char *base, int scope, const char *filter,
		       const char *const *attrs, LDAPControl **ctrls, int sizelimit);
void lb_mods_bytes(struct mods *m, int op, const char *attr, const void *p, size_t len);
/* A string attribute; empty: none (REPLACE removes it, ADD leaves it out). */
void lb_mods_str(struct mods *m, int op, const char *attr, const struct sip_str *s);
void lb_mods_int(struct mods *m, int op, const char *attr, long long v);
int lb_check_rc(struct lb_op *op, int rc);
/* An assertion control (RFC 4528) for filter, to free with ldap_control_free. */
int lb_assertion(struct lb_op *op, const char *filter, LDAPControl **ctrlp);
int64_t lb_wall_ms(void);
int lb_result_code(struct lb_op *op, LDAPMessage *msg);
/* Map an LDAP result of a request to an errno (0: success). */
int lb_errno_of(int rc);

/* ---- op.c --------------------------------------------------------------- */

void lb_stored_free(struct lb_op *op);
void lb_writes_free(struct lb_op *op);
void lb_op_free(struct lb_op *op);
struct lb_op *lb_op_new(struct lb_be *be, enum lb_kind kind, void *arg);
void lb_op_unlink(struct lb_op *op);
struct binding_set lb_set_of(struct lb_op *op, struct binding *scratch, size_t n);
/* op no longer holds its connection. */
void lb_op_release(struct lb_op *op);
/* Finish op: take it off every list, answer the caller with err (and what op holds), free
 * it. Returns false when the callback closed the backend. */
bool lb_op_complete(struct lb_op *op, int err, const struct binding_set *set,
			const struct dir_user *u);
/* Complete op from its timer: never inside the call that started it. */
void lb_op_defer(struct lb_op *op, int err);
/* Push op's deadline timeout_ms from now: for long ops made of bounded steps (a listing's
 * pages, a sweep's batches), where each step, not the whole, must answer in time. */
void lb_op_rearm(struct lb_op *op);
/* Send op's first request on a connection that is up, or queue it. */
int lb_op_dispatch(struct lb_op *op);
/* One message for an op; false when a callback closed the backend. */
bool lb_op_on_msg(struct lb_op *op, LDAPMessage *msg);

/* ---- conn.c ------------------------------------------------------------- */

uint32_t lb_jitter(uint32_t max);
void lb_conn_arm(struct lb_conn *c, uint32_t ms);
void lb_conn_teardown(struct lb_conn *c);
/* Ops waiting for a connection go out on whichever is up. */
void lb_queue_run(struct lb_be *be);
/* Fail every op carried by c with EAGAIN and reconnect after a backoff. */
void lb_conn_fail(struct lb_conn *c, const char *why);
void lb_conn_timer(evutil_socket_t fd, short what, void *arg);
struct lb_conn *lb_conn_pick(struct lb_be *be);
/* Serial mode: some connection is up, only busy. */
bool lb_conn_pick_busy(const struct lb_be *be);
bool lb_conn_any_connecting(const struct lb_be *be);
/* A request could not be sent: c is broken. Handled from its timer, since the caller may
 * be inside a location_* call. */
void lb_conn_broken(struct lb_conn *c);

/* ---- mirror.c ----------------------------------------------------------- */

void lb_user_unindex_free(struct lb_be *be, struct lb_user *u);
void lb_mirror_del(struct lb_be *be, const struct sip_str *uuid);
/* Put an entry read with its entryUUID attribute (a re-read, a read-back). */
int lb_mirror_put_plain(struct lb_be *be, LDAP *ld, LDAPMessage *e);
/* Answer a find from the mirror (from the op's timer). */
bool lb_find_answer(struct lb_op *op);
/* Answer a user listing from the mirror. */
bool lb_user_iter_answer(struct lb_op *op);
const char **lb_user_attrs(const struct lb_be *be, const char **a);
/* Start a refresh of the mirror on the sync connection: refreshAndPersist, or a plain
 * re-read where the server refused the sync control. */
void lb_sync_start(struct lb_conn *c);
void lb_sync_msg(struct lb_conn *c, LDAPMessage *msg);

/* ---- users.c ------------------------------------------------------------ */

/* put/del: find the user's entry by name (and domain: a URI in it, or none at all). */
int lb_send_user_lookup(struct lb_op *op);
bool lb_on_user(struct lb_op *op, LDAPMessage *msg);

/* ---- bindings.c --------------------------------------------------------- */

/* fetch, iterate, unbind: the live bindings (of one AOR, or all). */
int lb_send_bindings_read(struct lb_op *op);
int lb_send_apply_read(struct lb_op *op);
/* Append a write to op->writes, taking dn (freed on failure too). */
int lb_write_push(struct lb_op *op, enum lb_wkind kind, size_t change, char *dn);
bool lb_on_apply(struct lb_op *op, LDAPMessage *msg);
bool lb_on_read(struct lb_op *op, LDAPMessage *msg);

/* ---- sweep.c ------------------------------------------------------------ */

/* Arm the periodic sweep (a location backend: conf->sweeps). 0 or ENOMEM. */
int lb_sweep_init(struct lb_be *be);
void lb_sweep_fini(struct lb_be *be);
/* The sweep op finished (from op_complete): schedule the next one. */
void lb_sweep_done(struct lb_be *be, int err);
int lb_send_sweep(struct lb_op *op);
bool lb_on_sweep(struct lb_op *op, LDAPMessage *msg);

#endif
