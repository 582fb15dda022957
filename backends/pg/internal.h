/* Inside the pg backend (backends/pg/): the types and the functions its files share.
 * pg.c holds the vtable, stmts.c the SQL, conn.c the connections, the pipeline and the
 * batching, codec.c PostgreSQL's binary format, cache.c the directory cache, resolve.c the
 * host-name lookups before a connect. Nothing
 * outside this folder includes this. */
#ifndef SIPREG_BACKEND_PG_INTERNAL_H
#define SIPREG_BACKEND_PG_INTERNAL_H

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "sipreg/clock.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "sipreg/location_backend.h"

#define PG_DEFAULT_POOL	      4u
#define PG_MAX_POOL	      64u
#define PG_DEFAULT_TIMEOUT_MS 2000u
#define PG_BATCH_MAX	      64u  /* ops sent as one transaction */
#define PG_SYNCS_INFLIGHT     2u   /* transactions in flight per connection (pipelined) */
/* Waiting ops allowed per pooled connection: with the default pool, room for a healthy
 * server's pauses (a checkpoint's fsyncs, an autovacuum pass) of about a second at the
 * rates one sipregd reaches; timeout_ms and limits.max_pending bound the rest. */
#define PG_QUEUE_PER_CONN     2048u
#define PG_BACKOFF_MIN_MS     100u
#define PG_BACKOFF_MAX_MS     5000u
#define PG_CACHE_TTL_S	      10
#define PG_CACHE_MAX	      65536u
#define PG_SWEEP_INTERVAL_S   60
#define PG_LEASE_KEY	      "8315178070380003330"
#define PG_MAX_PARAMS	      20
#define PG_SWEEP_BATCH	      10000 /* rows one sweep statement removes at most */
#define PG_SWEEP_REPEAT	      100   /* sweep statements per tick when each came back full */
#define PG_PAGE_ROWS	      1000 /* iterate reads the table in pages of this many rows */
#define PG_ALIASES_MAX	      256  /* aliases a listed user shows */

/* Type OIDs of the parameters we send in binary (pg_type.dat; stable across versions). */
#define OID_BOOL	16u
#define OID_BYTEA	17u
#define OID_INT8	20u
#define OID_INT4	23u
#define OID_TEXT	25u
#define OID_BYTEA_ARRAY 1001u
#define OID_INT4_ARRAY	1007u
#define OID_INT8_ARRAY	1016u

/* The columns every binding query returns, in this order (see pg_stmts). */
enum pg_col {
	COL_OUTCOME = 0,
	COL_CONTACT,
	COL_KEY,
	COL_EXPIRES_AT,
	COL_Q,
	COL_CALL_ID,
	COL_CSEQ,
	COL_PATH,
	COL_INSTANCE,
	COL_REG_ID,
	COL_USER_AGENT,
	COL_PROTO,
	COL_IP,
	COL_PORT,
	COL_CONN_ID,
	COL_REGISTERED_BY,
	COL_UPDATED_AT,
	COL_AOR, /* iterate, fetch */
	COL_ID,	 /* iterate: the page key */
	/* iterate, fetch (PG_QUALIFY_COLS); an apply's result has none: UNKNOWN */
	COL_Q_STATUS,
	COL_Q_RTT_MS,
	COL_Q_AT,
	COL_Q_BY,
	COL_N_BINDING = COL_UPDATED_AT + 1,
};

#define PG_BINDING_COLS                                                                        \
	"b.contact, b.contact_key, floor(extract(epoch FROM b.expires))::bigint, "             \
	"b.q::integer, b.call_id, b.cseq, b.path, b.instance, b.reg_id, b.user_agent, "        \
	"b.received_proto, host(b.received_ip), b.received_port, b.conn_id, "                  \
	"b.registered_by, floor(extract(epoch FROM b.updated_at))::bigint"

#define PG_QUALIFY_COLS                                                                        \
	"b.qualify_status, b.qualify_rtt_us / 1000, "                                          \
	"floor(extract(epoch FROM b.qualified_at))::bigint, b.qualified_by"

enum pg_stmt {
	STMT_APPLY,
	STMT_FETCH,
	STMT_SWEEP,
	STMT_ITERATE,
	STMT_FIND_USER,
	STMT_USER_ADD,
	STMT_USER_UPDATE,
	STMT_USER_DEL,
	STMT_USER_ITER,
	STMT_UNBIND,
	STMT_QUALIFY_SET,
	STMT_N
};

struct pg_stmt_def {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[PG_MAX_PARAMS];
};

enum pg_kind {
	PG_APPLY,
	PG_FETCH,
	PG_ITERATE,
	PG_FIND_USER,
	PG_DONE,      /* user add/update/del: a row back, or none_err */
	PG_USER_ITER, /* paged like PG_ITERATE */
	PG_UNBIND,
	PG_QUALIFY, /* a row back: stored; none: ENOENT */
	/* internal: no caller callback */
	PG_SETUP,     /* SET / PREPARE / LISTEN while a connection comes up */
	PG_LEASE,     /* try to take the sweeper lease (connection 0) */
	PG_AUTOSWEEP, /* the lease holder's periodic sweep */
};

struct pg_be;
struct pg_conn;
struct pg_cached_user;

/* A growable byte buffer holding an op's parameters. */
struct pg_buf {
	char *p;
	size_t len, cap;
	bool oom;
};

struct pg_op {
	struct pg_op *next; /* queue or in-flight FIFO */
	struct pg_be *be;
	struct pg_conn *conn; /* set while sent */
	enum pg_kind kind;
	union location_cb cb;
	void *arg;
	struct event timer;
	bool timer_on;

	/* what to send */
	int stmt;	  /* enum pg_stmt, or -1 for a PG_SETUP/PG_LEASE text command */
	const char *text; /* the command for stmt == -1 */
	int prepare;	  /* PG_SETUP: >= 0 = PQsendPrepare of this statement */
	int nparams;
	size_t off[PG_MAX_PARAMS];
	int lengths[PG_MAX_PARAMS];
	bool null[PG_MAX_PARAMS];
	struct pg_buf buf;

	/* results */
	PGresult *res; /* the (last) complete result of the query */
	int err;
	bool query_done;   /* the query's NULL result came: the Sync is next */
	bool final_sent;   /* iterate: the end-of-listing callback ran */
	bool skipped;	   /* sweep: another instance holds the lease, nothing to do */
	bool has_affinity; /* apply/fetch: keep to the AOR's connection */
	uint64_t affinity;
	bool alone;		 /* sweep, iterate, internal: never batched */
	bool sync_after;	 /* the batch's Sync follows this op's statement */
	uint64_t order;		 /* position in a batch: the AOR's lock key (lock_key) */
	size_t aor_off, aor_len; /* apply/fetch: the AOR in buf */
	size_t user_off, user_len, domain_off, domain_len; /* find_user */
	struct pg_cached_user *hit; /* find_user answered from the cache */
	int none_err;		    /* PG_DONE: the error when no row comes back */
};

/* RESOLVING: the conninfo's host names are being looked up (resolve.c); the connect
 * timeout already runs. */
enum pg_conn_state { PC_DOWN, PC_RESOLVING, PC_CONNECTING, PC_SETUP, PC_READY };

struct pg_lookup;

struct pg_conn {
	struct pg_be *be;
	unsigned idx;
	PGconn *pc;
	enum pg_conn_state state;
	struct event io;
	bool io_on;
	short io_what;
	evutil_socket_t io_fd;
	struct event timer;  /* connect timeout, then backoff before the next attempt */
	struct event failev; /* deferred failure (a send failed inside a callback) */
	unsigned backoff_ms;
	int fail_err;
	struct pg_op *head, *tail; /* in flight, in order */
	unsigned n_inflight;
	struct pg_op *whead, *wtail;	   /* statement done, waiting for the batch's Sync */
	unsigned n_syncs;		   /* transactions in flight */
	struct pg_op *batch[PG_BATCH_MAX]; /* being assembled by be_pump */
	unsigned n_batch;
	bool batch_closed;   /* holds an op that goes alone */
	unsigned setup_left; /* PG_SETUP ops still to complete */
	bool want_write;
	bool logged_down; /* say "cannot connect" once per outage */
	struct pg_lookup *lookup; /* RESOLVING: the lookup in progress */
	char why[512];		  /* why the connect failed, when libpq cannot say (a lookup) */
	/* CLOCK_MONOTONIC: when the server last sent anything, or was handed work while
	 * idle. A connection is dead when this grows old, not when one op does. */
	int64_t progress_ns;
};

/* A directory answer kept for PG_CACHE_TTL_S; shared with deferred callbacks by refcount. */
struct pg_cached_user {
	struct hmap_node node;
	unsigned refs;
	bool in_cache;
	bool found;
	time_t expires;
	struct dir_user u; /* strings point into data */
	struct sip_str *aliases;
	size_t key_len; /* key = user bytes, '@', lower-case domain */
	char *key;
	char data[];
};

struct pg_be {
	struct event_base *base;
	char *conninfo;
	char *resolv_conf; /* the resolver's configuration, NULL = c-ares' default */
	unsigned timeout_ms;
	unsigned pool;
	struct pg_conn *conns;
	struct pg_op *qhead, *qtail; /* waiting for a connection */
	size_t n_queued, max_queued;
	unsigned rr;		     /* round-robin start for picking a connection */
	struct pg_op *dhead, *dtail; /* completed from the cache, delivered by defer_ev */
	struct event defer_ev;
	struct event sweep_ev;
	unsigned sweep_rounds; /* sweep statements sent since the last tick */
	bool lease;	  /* connection 0 holds the sweeper lease */
	bool lease_other; /* another session holds it: sweeping is theirs */
	bool lease_pending;
	struct hmap cache;
	size_t n_cached;
	struct binding *scratch;
	size_t scratch_cap;
	char lock_timeout_sql[64];
	char *instance_id; /* qualified_by of the qualify states this instance stores */
	bool closing;
	/* Event handlers running right now (a callback may close the backend under them):
	 * close() then cancels everything but leaves the freeing to the outermost one. */
	unsigned busy;
	bool dead;
	struct pg_op *listing; /* an iterate handing out a whole result's rows right now */
};

/* The prepared statements (stmts.c), by enum pg_stmt. */
extern const struct pg_stmt_def pg_stmts[STMT_N];
extern const struct binding_set pg_empty_set;


void pg_buf_put(struct pg_buf *b, const void *p, size_t len);
void pg_buf_i32(struct pg_buf *b, int32_t v);
void pg_buf_i64(struct pg_buf *b, int64_t v);
void pg_param_end(struct pg_op *op, int i);
void pg_param_bytes(struct pg_op *op, int i, const struct sip_str *s);
void pg_param_i32(struct pg_op *op, int i, int32_t v);
void pg_param_i64(struct pg_op *op, int i, int64_t v);
void pg_param_i64_set(struct pg_op *op, int i, int64_t v);
void pg_param_bool(struct pg_op *op, int i, bool v);
void pg_param_null(struct pg_op *op, int i);
void pg_array_begin(struct pg_op *op, int i, Oid elem, size_t n, bool has_null);
uint64_t pg_lock_key(const struct sip_str *aor);
int32_t pg_clamp_i32(uint32_t v);
uint32_t pg_get_u32(const char *p);
int64_t pg_res_i64(const PGresult *r, int row, int col);
int32_t pg_res_i32(const PGresult *r, int row, int col, int32_t if_null);
struct sip_str pg_res_str(const PGresult *r, int row, int col);
void pg_res_binding(const PGresult *r, int row, const struct sip_str *aor, struct binding *b);
const char *pg_qualify_text(enum qualify_status s);
struct binding *pg_scratch_get(struct pg_be *be, size_t n);
int pg_res_errno(const PGresult *r, bool *conn_broken);
void pg_cached_unref(struct pg_cached_user *cu);
void pg_cache_flush(struct pg_be *be);
size_t pg_cache_key(char *dst, const struct sip_str *user, const struct sip_str *domain);
struct pg_cached_user *pg_cache_find(struct pg_be *be, const char *key, size_t len);
void pg_res_user(const PGresult *r, int row, struct dir_user *u, struct sip_str *aliases, size_t cap);
struct pg_cached_user *pg_cached_new(const PGresult *r, const char *key, size_t key_len);
void pg_cache_insert(struct pg_be *be, struct pg_cached_user *cu);
void pg_op_free(struct pg_op *op);
struct pg_op *pg_op_new(struct pg_be *be, enum pg_kind kind, void *arg);
void pg_op_deliver(struct pg_op *op);
void pg_queue_unlink(struct pg_be *be, struct pg_op *op);
int pg_op_submit(struct pg_be *be, struct pg_op *op);
void pg_conn_unwatch(struct pg_conn *c);
void pg_conn_failev(evutil_socket_t fd, short what, void *arg);
void pg_conn_start(struct pg_conn *c);
void pg_conn_timer(evutil_socket_t fd, short what, void *arg);
void pg_be_defer_run(evutil_socket_t fd, short what, void *arg);
void pg_defer_op(struct pg_be *be, struct pg_op *op);
void pg_be_sweep_tick(evutil_socket_t fd, short what, void *arg);
void pg_be_free(struct pg_be *be);

/* Host-name lookups (resolve.c). done(err, arg) runs once, from the loop, never inside
 * pg_lookup_start(); err is 0 (pg_lookup_params() has the parameters), EHOSTUNREACH (no
 * name resolved), EIO (no resolver) or ENOMEM; pg_lookup_why() then says why (with err 0:
 * the names of a list that did not resolve, or ""). The caller frees the lookup, from done
 * or before it (which cancels it: done never runs). */
typedef void(pg_lookup_h)(int err, void *arg);
/* Start resolving the names conninfo's host= (else PGHOST) lists, through the resolver
 * configuration at resolv_conf (NULL: /etc/resolv.conf). *lp = NULL when there is nothing
 * to look up (no names, hostaddr given, a conninfo libpq will refuse): connect with conninfo
 * as it is. Returns 0 or ENOMEM. */
int pg_lookup_start(struct pg_lookup **lp, struct event_base *base, const char *conninfo,
		    const char *resolv_conf, pg_lookup_h *done, void *arg);
void pg_lookup_free(struct pg_lookup **lp);
/* After done(0): the keywords and values (host, hostaddr, maybe port; at most 3, borrowed
 * from l) to append after the conninfo so they override it. Returns their count. */
size_t pg_lookup_params(const struct pg_lookup *l, const char **keys, const char **vals);
const char *pg_lookup_why(const struct pg_lookup *l);
/* The connect timeout ran out during the lookup: why, naming the names still unanswered. */
const char *pg_lookup_timed_out(struct pg_lookup *l, unsigned ms);



#endif
