/* The PostgreSQL backend: the location service and the directory in one database shared by
 * every sipregd of a cluster (and read by its proxies), over asynchronous libpq.
 *
 * DESIGN: the moving parts, all on the caller's libevent loop, nothing ever blocks.
 * - Connections: a small pool (conf->pool, default 4). Each connects with
 *   PQconnectStartParams/PQconnectPoll driven by socket readiness under a timer, then enters
 *   pipeline mode, sets lock_timeout and prepares every statement (itself pipelined); only
 *   then is it READY. A broken connection (read/write failure, CONNECTION_BAD, SQLSTATE class
 *   08, a timed-out query) fails the operations it carried and reconnects after a backoff
 *   (100 ms doubling to 5 s, with +-12.5 % jitter drawn from getrandom(2), logged).
 * - Operations: each call copies its request into a struct pg_op (parameters already in
 *   PostgreSQL's binary format: byte strings stay bytes, NUL included) and either sends it
 *   at once or waits in one bounded FIFO. Each op is one PQsendQueryPrepared; a connection
 *   has at most PG_SYNCS_INFLIGHT transactions in flight, and what waited meanwhile goes
 *   as the next transaction: up to PG_BATCH_MAX statements and one PQpipelineSync, so one
 *   commit (one WAL flush with synchronous_commit on) serves them all. Low load: one op per
 *   transaction, no added latency; high load: batches grow by themselves. Callbacks run
 *   only after the Sync's ReadyForQuery, i.e. after COMMIT; if any statement of a batch
 *   failed, the batch rolled back and every op of it fails. A batch's statements are
 *   ordered by the AOR's lock key (XXH3-64 of its bytes; stable, so one AOR's ops keep their
 *   order), and sipreg_apply locks exactly that key: one global lock order on every
 *   instance, so the AOR locks of two batches cannot deadlock. Sweeps and
 *   listings go alone. An apply is one round trip: the stored function sipreg_apply()
 *   (sql/migrations/) locks the AOR and applies RFC 3261 §10.3 step 7.
 * - Fail fast: with no connection up or connecting, or the queue full, a call returns EAGAIN
 *   at once (the registrar answers 503 + Retry-After). Every op has a timer (timeout_ms,
 *   default 2000): a queued op that times out completes with ETIMEDOUT; one already sent
 *   takes its connection down with it, since a healthy server answers within lock_timeout.
 * - Directory: find_user results (found or not) are cached for PG_CACHE_TTL_S seconds; the
 *   users/domains tables NOTIFY sipreg_users on every change, which connection 0 LISTENs to
 *   and which empties the cache (as does a reconnect of connection 0: it may have missed a
 *   notification). Cache hits complete through a deferred event, never inside the call.
 * - Sweeper: connection 0 tries to hold a session advisory lock (the lease); the instance
 *   holding it runs sipreg_sweep() every PG_SWEEP_INTERVAL_S, so N instances do not all
 *   sweep. The lease moves when its holder's connection goes away. A sweep statement
 *   removes at most PG_SWEEP_BATCH rows and skips rows an apply holds (it never waits, so
 *   it cannot deadlock with batches); a full one is followed by the next at once. */
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
#include "pg_conf.h"
#include "pg_schema.h"
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
	COL_AOR, /* iterate only */
	COL_ID,	 /* iterate only: the page key */
	COL_N_BINDING = COL_UPDATED_AT + 1,
};

#define PG_BINDING_COLS                                                                        \
	"b.contact, b.contact_key, floor(extract(epoch FROM b.expires))::bigint, "             \
	"b.q::integer, b.call_id, b.cseq, b.path, b.instance, b.reg_id, b.user_agent, "        \
	"b.received_proto, host(b.received_ip), b.received_port, b.conn_id, "                  \
	"b.registered_by, floor(extract(epoch FROM b.updated_at))::bigint"

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
	STMT_N
};

struct pg_stmt_def {
	const char *name;
	const char *sql;
	int nparams;
	Oid types[PG_MAX_PARAMS];
};

static const struct pg_stmt_def pg_stmts[STMT_N] = {
    [STMT_APPLY] = {"sipreg_apply",
		    /* $20, the AOR's lock key, goes first (migration 002). */
		    "SELECT * FROM sipreg_apply($20, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
		    "$11, $12, $13, $14, $15, $16, $17, $18, $19)",
		    20,
		    {OID_BYTEA, OID_BYTEA, OID_INT8, OID_BOOL, OID_BYTEA_ARRAY, OID_BYTEA_ARRAY,
		     OID_INT4_ARRAY, OID_INT4_ARRAY, OID_BYTEA_ARRAY, OID_INT8_ARRAY, OID_INT4,
		     OID_BYTEA, OID_BYTEA, OID_TEXT, OID_TEXT, OID_INT4, OID_INT8, OID_BYTEA,
		     OID_INT8, OID_INT8}},
    [STMT_FETCH] = {"sipreg_fetch",
		    "SELECT NULL::integer, " PG_BINDING_COLS " FROM bindings b "
		    "WHERE b.aor = $1 AND b.expires > to_timestamp($2) "
		    "ORDER BY coalesce(b.q, 1000) DESC, b.updated_at DESC, b.id",
		    2,
		    {OID_BYTEA, OID_INT8}},
    [STMT_SWEEP] = {"sipreg_sweep", "SELECT sipreg_sweep($1, $2)", 2, {OID_INT8, OID_INT4}},
    [STMT_ITERATE] = {"sipreg_iterate",
		      "SELECT NULL::integer, " PG_BINDING_COLS ", b.aor, b.id FROM bindings b "
		      "WHERE b.expires > to_timestamp($1) AND b.id > $2 ORDER BY b.id "
		      "LIMIT 1000",
		      2,
		      {OID_INT8, OID_INT8}},
    [STMT_FIND_USER] = {"sipreg_find_user",
			"SELECT username, domain, ha1_md5, ha1_sha256, enabled, auth_off, "
			"max_contacts, aliases FROM sipreg_find_user($1, $2)",
			2,
			{OID_BYTEA, OID_TEXT}},
    /* Provisioning (sipregctl): the domain joins domains in the same statement, whose
     * foreign key is checked at its end. No row back: the user exists (add) or does not
     * (update, del). The users trigger tells every instance to drop its cache. */
    [STMT_USER_ADD] = {"sipreg_user_add",
		       "WITH d AS (INSERT INTO domains (domain) VALUES ($2) "
		       "ON CONFLICT DO NOTHING) "
		       "INSERT INTO users (username, domain, ha1_md5, ha1_sha256, enabled, "
		       "auth_off, max_contacts, aliases) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
		       "ON CONFLICT (username, domain) DO NOTHING RETURNING id",
		       8,
		       {OID_BYTEA, OID_TEXT, OID_TEXT, OID_TEXT, OID_BOOL, OID_BOOL, OID_INT4,
			OID_BYTEA_ARRAY}},
    [STMT_USER_UPDATE] = {"sipreg_user_update",
			  "UPDATE users SET ha1_md5 = $3, ha1_sha256 = $4, enabled = $5, "
			  "auth_off = $6, max_contacts = $7, aliases = $8, updated_at = now() "
			  "WHERE username = $1 AND domain = $2 RETURNING id",
			  8,
			  {OID_BYTEA, OID_TEXT, OID_TEXT, OID_TEXT, OID_BOOL, OID_BOOL, OID_INT4,
			   OID_BYTEA_ARRAY}},
    [STMT_USER_DEL] = {"sipreg_user_del",
		       "DELETE FROM users WHERE username = $1 AND domain = $2 RETURNING id",
		       2,
		       {OID_BYTEA, OID_TEXT}},
    [STMT_USER_ITER] = {"sipreg_user_iter",
			"SELECT username, domain, ha1_md5, ha1_sha256, enabled, auth_off, "
			"max_contacts, aliases, id FROM users WHERE id > $1 ORDER BY id LIMIT 1000",
			1,
			{OID_INT8}},
    /* The operator's removal: all of an AOR's bindings or the one with that key; the
     * count of live ones removed says whether there was anything to remove. */
    [STMT_UNBIND] = {"sipreg_unbind",
		     "WITH x AS (DELETE FROM bindings WHERE aor = $1 AND "
		     "($2::bytea IS NULL OR contact_key = $2) RETURNING expires) "
		     "SELECT count(*) FILTER (WHERE expires > now()) FROM x",
		     2,
		     {OID_BYTEA, OID_BYTEA}},
};

enum pg_kind {
	PG_APPLY,
	PG_FETCH,
	PG_ITERATE,
	PG_FIND_USER,
	PG_DONE,      /* user add/update/del: a row back, or none_err */
	PG_USER_ITER, /* paged like PG_ITERATE */
	PG_UNBIND,
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

enum pg_conn_state { PC_DOWN, PC_CONNECTING, PC_SETUP, PC_READY };

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
	bool closing;
	/* Event handlers running right now (a callback may close the backend under them):
	 * close() then cancels everything but leaves the freeing to the outermost one. */
	unsigned busy;
	bool dead;
	struct pg_op *listing; /* an iterate handing out a whole result's rows right now */
};

static const struct binding_set pg_empty_set = {.v = NULL, .n = 0};

static void conn_fail(struct pg_conn *c, int err);
static void be_free(struct pg_be *be);

static void be_enter(struct pg_be *be)
{
	be->busy++;
}

static void be_leave(struct pg_be *be)
{
	if (--be->busy == 0 && be->dead)
		be_free(be);
}
static void conn_pump(struct pg_conn *c);
static void be_pump(struct pg_be *be);
static int op_resubmit(struct pg_be *be, struct pg_op *op);
static void be_autosweep(struct pg_be *be);

/* ---- parameter encoding (binary format) -------------------------------------------- */

static void buf_put(struct pg_buf *b, const void *p, size_t len)
{
	if (b->oom)
		return;
	if (len > SIZE_MAX / 4 || b->len > SIZE_MAX / 4) {
		b->oom = true;
		return;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (cap < b->len + len)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	if (len)
		memcpy(b->p + b->len, p, len);
	b->len += len;
}

static void buf_i32(struct pg_buf *b, int32_t v)
{
	uint32_t u = (uint32_t)v;
	unsigned char x[4] = {(unsigned char)(u >> 24), (unsigned char)(u >> 16),
			      (unsigned char)(u >> 8), (unsigned char)u};

	buf_put(b, x, 4);
}

static void buf_i64(struct pg_buf *b, int64_t v)
{
	uint64_t u = (uint64_t)v;
	unsigned char x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(u >> (56 - 8 * i));
	buf_put(b, x, 8);
}

/* Start parameter i at the current end of the buffer. */
static void param_begin(struct pg_op *op, int i)
{
	op->off[i] = op->buf.len;
	op->null[i] = false;
	if (op->nparams < i + 1)
		op->nparams = i + 1;
}

static void param_end(struct pg_op *op, int i)
{
	op->lengths[i] = (int)(op->buf.len - op->off[i]);
}

static void param_bytes(struct pg_op *op, int i, const struct sip_str *s)
{
	param_begin(op, i);
	if (s->len > INT32_MAX / 2)
		op->buf.oom = true;
	else
		buf_put(&op->buf, s->p, s->len);
	param_end(op, i);
}

static void param_i32(struct pg_op *op, int i, int32_t v)
{
	param_begin(op, i);
	buf_i32(&op->buf, v);
	param_end(op, i);
}

static void param_i64(struct pg_op *op, int i, int64_t v)
{
	param_begin(op, i);
	buf_i64(&op->buf, v);
	param_end(op, i);
}

/* Rewrite an int8 parameter in place (the next page of an iterate). */
static void param_i64_set(struct pg_op *op, int i, int64_t v)
{
	uint64_t u = (uint64_t)v;
	unsigned char *p = (unsigned char *)op->buf.p + op->off[i];

	for (int k = 0; k < 8; k++)
		p[k] = (unsigned char)(u >> (56 - 8 * k));
}

static void param_bool(struct pg_op *op, int i, bool v)
{
	unsigned char x = v ? 1 : 0;

	param_begin(op, i);
	buf_put(&op->buf, &x, 1);
	param_end(op, i);
}

static void param_null(struct pg_op *op, int i)
{
	param_begin(op, i);
	op->null[i] = true;
	op->lengths[i] = 0;
}

/* One-dimensional array header (array_recv's format); elements follow. */
static void array_begin(struct pg_op *op, int i, Oid elem, size_t n, bool has_null)
{
	param_begin(op, i);
	buf_i32(&op->buf, n ? 1 : 0);
	buf_i32(&op->buf, has_null ? 1 : 0);
	buf_i32(&op->buf, (int32_t)elem);
	if (n) {
		buf_i32(&op->buf, (int32_t)n);
		buf_i32(&op->buf, 1);
	}
}

/* The AOR's lock key, and its statement's place in a batch: one value for both, so every
 * transaction of every instance takes AOR locks in one global order (sipreg_apply locks
 * exactly this key). XXH3 unseeded, unlike hmap_hash, so every process computes the same
 * key; ops without an AOR keep 0 and take no locks, so where they sort does not matter. */
static uint64_t lock_key(const struct sip_str *aor)
{
	return XXH3_64bits(aor->p ? aor->p : "", aor->len);
}

static int32_t clamp_i32(uint32_t v)
{
	return v > (uint32_t)INT32_MAX ? INT32_MAX : (int32_t)v;
}

/* ---- result decoding (binary format) ----------------------------------------------- */

static uint32_t get_u32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static int64_t res_i64(const PGresult *r, int row, int col)
{
	const char *p;
	uint64_t u = 0;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	p = PQgetvalue(r, row, col);
	for (int i = 0; i < 8; i++)
		u = u << 8 | (unsigned char)p[i];
	return (int64_t)u;
}

static int32_t res_i32(const PGresult *r, int row, int col, int32_t if_null)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4)
		return if_null;
	return (int32_t)get_u32(PQgetvalue(r, row, col));
}

static struct sip_str res_str(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return SIP_STR_NULL;
	return (struct sip_str){.p = PQgetvalue(r, row, col),
				.len = (size_t)PQgetlength(r, row, col)};
}

/* Fill b from one row of the binding columns; strings borrow from r. */
static void res_binding(const PGresult *r, int row, const struct sip_str *aor,
			struct binding *b)
{
	struct sip_str s;

	memset(b, 0, sizeof(*b));
	b->aor = aor ? *aor : res_str(r, row, COL_AOR);
	b->contact = res_str(r, row, COL_CONTACT);
	b->key = res_str(r, row, COL_KEY);
	b->expires_at = res_i64(r, row, COL_EXPIRES_AT);
	b->q = (int16_t)res_i32(r, row, COL_Q, Q_NONE);
	b->call_id = res_str(r, row, COL_CALL_ID);
	b->cseq = (uint32_t)res_i64(r, row, COL_CSEQ);
	b->path = res_str(r, row, COL_PATH);
	b->instance = res_str(r, row, COL_INSTANCE);
	b->reg_id = (uint32_t)res_i64(r, row, COL_REG_ID);
	b->user_agent = res_str(r, row, COL_USER_AGENT);
	s = res_str(r, row, COL_PROTO);
	b->source.proto = sip_proto_from_name(s.p ? s.p : "", s.len);
	s = res_str(r, row, COL_IP);
	if (s.len < sizeof(b->source.ip)) {
		if (s.len)
			memcpy(b->source.ip, s.p, s.len);
		b->source.ip[s.len] = '\0';
	}
	b->source.port = (uint16_t)res_i32(r, row, COL_PORT, 0);
	b->source.conn_id = (uint64_t)res_i64(r, row, COL_CONN_ID);
	b->registered_by = res_str(r, row, COL_REGISTERED_BY);
	b->updated_at = res_i64(r, row, COL_UPDATED_AT);
}

/* Room for n bindings in the backend's scratch array; NULL on ENOMEM. */
static struct binding *scratch_get(struct pg_be *be, size_t n)
{
	if (n > be->scratch_cap) {
		size_t cap = be->scratch_cap ? be->scratch_cap : 16;
		struct binding *v;

		while (cap < n)
			cap *= 2;
		v = realloc(be->scratch, cap * sizeof(*v));
		if (!v)
			return NULL;
		be->scratch = v;
		be->scratch_cap = cap;
	}
	return be->scratch;
}

/* Map an error result to an errno value; connection-class errors (08) break the link. */
static int res_errno(const PGresult *r, bool *conn_broken)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	*conn_broken = false;
	if (!state)
		return EIO;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
		*conn_broken = true; /* connection exception, admin/crash shutdown */
		return ECONNRESET;
	}
	if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
		return ETIMEDOUT; /* lock_timeout, statement cancelled */
	if (strncmp(state, "53", 2) == 0 || strncmp(state, "40", 2) == 0)
		return EAGAIN; /* out of resources, serialization failure, deadlock */
	return EIO;
}

/* ---- the directory cache ------------------------------------------------------------ */

static void cached_unref(struct pg_cached_user *cu)
{
	if (cu && --cu->refs == 0)
		free(cu);
}

static void cache_drop(struct pg_be *be, struct pg_cached_user *cu)
{
	hmap_remove(&be->cache, &cu->node);
	cu->in_cache = false;
	be->n_cached--;
	cached_unref(cu);
}

static void cache_flush(struct pg_be *be)
{
	struct hmap_node *n, *tmp;
	size_t i;

	if (!be->cache.buckets)
		return;
	HMAP_FOREACH_SAFE(&be->cache, n, tmp, i)
	{
		cache_drop(be, hmap_entry(n, struct pg_cached_user, node));
	}
}

/* The key of a directory lookup: user bytes, '@', the domain in lower case. */
static size_t cache_key(char *dst, const struct sip_str *user, const struct sip_str *domain)
{
	size_t n = 0;

	if (user->len)
		memcpy(dst, user->p, user->len);
	n += user->len;
	dst[n++] = '@';
	for (size_t i = 0; i < domain->len; i++) {
		char ch = domain->p[i];

		dst[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	return n;
}

static struct pg_cached_user *cache_find(struct pg_be *be, const char *key, size_t len)
{
	uint64_t h = hmap_hash(key, len);
	time_t now = time(NULL);

	for (struct hmap_node *n = hmap_first(&be->cache, h); n; n = hmap_next(n, h)) {
		struct pg_cached_user *cu = hmap_entry(n, struct pg_cached_user, node);

		if (cu->key_len != len || memcmp(cu->key, key, len) != 0)
			continue;
		if (cu->expires <= now) {
			cache_drop(be, cu);
			return NULL;
		}
		return cu;
	}
	return NULL;
}

/* Decode a binary bytea[] into n sip_strs borrowing from p; returns the count, or -1 when
 * malformed. v may be NULL to count only. */
static long array_decode(const char *p, size_t len, struct sip_str *v, size_t cap)
{
	size_t off = 12, n;
	uint32_t ndim;

	if (len < 12)
		return -1;
	ndim = get_u32(p);
	if (ndim == 0)
		return 0;
	if (ndim != 1 || len < 20)
		return -1;
	n = get_u32(p + 12);
	off = 20;
	for (size_t i = 0; i < n; i++) {
		uint32_t el;

		if (off + 4 > len)
			return -1;
		el = get_u32(p + off);
		off += 4;
		if (el == 0xffffffffu) {
			el = 0; /* a NULL alias reads as empty */
		} else if (el > len - off) {
			return -1;
		}
		if (v && i < cap)
			v[i] = (struct sip_str){.p = p + off, .len = el};
		off += el;
	}
	return (long)n;
}

/* A cache entry for the answer in r (row 0, or not found). NULL on ENOMEM or malformed
 * data. The caller holds the one reference it returns. */
/* A users row (the find_user columns) into u, its strings and up to cap aliases pointing
 * into r: valid while r is. More aliases than cap are left out of the listing. */
static void res_user(const PGresult *r, int row, struct dir_user *u, struct sip_str *aliases,
		     size_t cap)
{
	struct sip_str arr = res_str(r, row, 7);
	long n = arr.p ? array_decode(arr.p, arr.len, aliases, cap) : 0;

	*u = (struct dir_user){
	    .username = res_str(r, row, 0),
	    .domain = res_str(r, row, 1),
	    .ha1_md5 = res_str(r, row, 2),
	    .ha1_sha256 = res_str(r, row, 3),
	    .enabled = !PQgetisnull(r, row, 4) && PQgetvalue(r, row, 4)[0] != 0,
	    .auth_off = !PQgetisnull(r, row, 5) && PQgetvalue(r, row, 5)[0] != 0,
	    .max_contacts = (uint32_t)res_i32(r, row, 6, 0),
	    .aliases = aliases,
	    .n_aliases = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap,
	};
}

static struct pg_cached_user *cached_new(const PGresult *r, const char *key, size_t key_len)
{
	struct sip_str f[4], arr;
	struct pg_cached_user *cu;
	size_t total = key_len;
	long n_alias = 0;
	char *cur;
	bool found = PQntuples(r) > 0;

	if (found) {
		for (int i = 0; i < 4; i++) {
			f[i] = res_str(r, 0, i);
			total += f[i].len;
		}
		arr = res_str(r, 0, 7);
		n_alias = arr.p ? array_decode(arr.p, arr.len, NULL, 0) : 0;
		if (n_alias < 0)
			return NULL;
		total += arr.len + (size_t)n_alias * sizeof(struct sip_str) + sizeof(void *);
	}
	cu = calloc(1, sizeof(*cu) + total);
	if (!cu)
		return NULL;
	cu->refs = 1;
	cu->found = found;
	cu->expires = time(NULL) + PG_CACHE_TTL_S;
	cur = cu->data;
	if (found) {
		struct sip_str *dst[4] = {&cu->u.username, &cu->u.domain, &cu->u.ha1_md5,
					  &cu->u.ha1_sha256};
		char *araw;

		/* the alias array first: it needs pointer alignment */
		cu->aliases = (struct sip_str *)(void *)cur;
		cur += (size_t)n_alias * sizeof(struct sip_str) + sizeof(void *);
		for (int i = 0; i < 4; i++) {
			if (f[i].len)
				memcpy(cur, f[i].p, f[i].len);
			*dst[i] = (struct sip_str){.p = cur, .len = f[i].len};
			cur += f[i].len;
		}
		araw = cur;
		if (arr.len)
			memcpy(araw, arr.p, arr.len);
		cur += arr.len;
		if (n_alias)
			array_decode(araw, arr.len, cu->aliases, (size_t)n_alias);
		cu->u.aliases = n_alias ? cu->aliases : NULL;
		cu->u.n_aliases = (size_t)n_alias;
		cu->u.enabled = !PQgetisnull(r, 0, 4) && PQgetvalue(r, 0, 4)[0] != 0;
		cu->u.auth_off = !PQgetisnull(r, 0, 5) && PQgetvalue(r, 0, 5)[0] != 0;
		cu->u.max_contacts = (uint32_t)res_i32(r, 0, 6, 0);
	}
	cu->key = cur;
	memcpy(cu->key, key, key_len);
	cu->key_len = key_len;
	return cu;
}

static void cache_insert(struct pg_be *be, struct pg_cached_user *cu)
{
	struct pg_cached_user *old = cache_find(be, cu->key, cu->key_len);

	if (old)
		cache_drop(be, old);
	if (be->n_cached >= PG_CACHE_MAX)
		cache_flush(be); /* crude but bounded; entries live seconds anyway */
	cu->refs++;
	cu->in_cache = true;
	hmap_insert(&be->cache, &cu->node, hmap_hash(cu->key, cu->key_len));
	be->n_cached++;
}

/* ---- operations ---------------------------------------------------------------------- */

static void op_free(struct pg_op *op)
{
	if (!op)
		return;
	if (op->timer_on)
		event_del(&op->timer);
	PQclear(op->res);
	cached_unref(op->hit);
	free(op->buf.p);
	free(op);
}

static void op_timeout(evutil_socket_t fd, short what, void *arg);

static struct pg_op *op_new(struct pg_be *be, enum pg_kind kind, void *arg)
{
	struct pg_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->be = be;
	op->kind = kind;
	op->arg = arg;
	op->stmt = -1;
	op->prepare = -1;
	evtimer_assign(&op->timer, be->base, op_timeout, op);
	return op;
}

static void op_arm_ms(struct pg_op *op, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (evtimer_add(&op->timer, &tv) == 0)
		op->timer_on = true;
}

static void op_arm(struct pg_op *op)
{
	op_arm_ms(op, op->be->timeout_ms);
}

/* Deliver the op's answer to its caller (or to the backend for internal ops) and free it. */
static void op_deliver(struct pg_op *op)
{
	struct pg_be *be = op->be;
	const PGresult *r = op->res;
	int err = op->err;

	if (!err && !r && !op->hit && !op->skipped && op->kind != PG_SETUP)
		err = EIO; /* a query that answered nothing */
	switch (op->kind) {
	case PG_APPLY: {
		struct sip_str aor = {.p = op->buf.p + op->aor_off, .len = op->aor_len};
		struct binding_set set = pg_empty_set;
		int outcome = REG_OK;
		struct binding *v = NULL;
		int rows;

		if (err)
			goto apply_out;
		rows = PQntuples(r);
		if (rows < 1 || PQnfields(r) < COL_N_BINDING ||
		    PQgetisnull(r, 0, COL_OUTCOME)) {
			log_err("pg: sipreg_apply returned no status row");
			err = EPROTO;
			goto apply_out;
		}
		outcome = res_i32(r, 0, COL_OUTCOME, 0);
		if (outcome != REG_OK && outcome != REG_OUT_OF_ORDER &&
		    outcome != REG_TOO_MANY_CONTACTS) {
			err = EPROTO;
			goto apply_out;
		}
		if (outcome == REG_OK && rows > 1) {
			v = scratch_get(be, (size_t)rows - 1);
			if (!v) {
				err = ENOMEM;
				goto apply_out;
			}
			for (int i = 1; i < rows; i++)
				res_binding(r, i, &aor, &v[i - 1]);
			set = (struct binding_set){.v = v, .n = (size_t)rows - 1};
		}
	apply_out:
		op->cb.apply(err, err ? REG_OK : (enum reg_outcome)outcome, &set, op->arg);
		break;
	}
	case PG_FETCH: {
		struct sip_str aor = {.p = op->buf.p + op->aor_off, .len = op->aor_len};
		struct binding_set set = pg_empty_set;
		int rows = err ? 0 : PQntuples(r);
		struct binding *v;

		if (!err && rows > 0) {
			v = scratch_get(be, (size_t)rows);
			if (!v) {
				err = ENOMEM;
			} else {
				for (int i = 0; i < rows; i++)
					res_binding(r, i, &aor, &v[i]);
				set = (struct binding_set){.v = v, .n = (size_t)rows};
			}
		}
		op->cb.fetch(err, &set, op->arg);
		break;
	}
	case PG_ITERATE: {
		/* One page of rows by primary key (short statements, bounded memory), then the
		 * next page as a new query, until a page comes back short. */
		int rows = err ? 0 : PQntuples(r);

		be->listing = op;
		for (int i = 0; i < rows && !op->final_sent; i++) {
			struct binding b;

			res_binding(r, i, NULL, &b);
			op->cb.iterate(0, &b, op->arg);
		}
		be->listing = NULL;
		if (op->final_sent) /* close() ended it from inside a callback */
			break;
		if (rows == PG_PAGE_ROWS) {
			int64_t last = res_i64(r, rows - 1, COL_ID);

			param_i64_set(op, 1, last);
			PQclear(op->res);
			op->res = NULL;
			op->query_done = false;
			err = op_resubmit(be, op);
			if (!err)
				return;
		}
		op->cb.iterate(err, NULL, op->arg);
		break;
	}
	case PG_FIND_USER: {
		struct pg_cached_user *cu = op->hit;

		if (!cu && !err) {
			cu = cached_new(r, op->buf.p + op->user_off,
					op->user_len + 1 + op->domain_len);
			if (!cu)
				err = ENOMEM;
			else
				cache_insert(be, cu);
			op->hit = cu;
		}
		op->cb.find_user(err, (!err && cu->found) ? &cu->u : NULL, op->arg);
		break;
	}
	case PG_DONE:
		if (!err && PQntuples(r) == 0)
			err = op->none_err;
		/* Our own write is seen by our next lookup at once; the other instances drop
		 * theirs on the trigger's NOTIFY. */
		if (!err)
			cache_flush(be);
		op->cb.done(err, op->arg);
		break;
	case PG_UNBIND:
		op->cb.done(err ? err : res_i64(r, 0, 0) > 0 ? 0 : ENOENT, op->arg);
		break;
	case PG_USER_ITER: {
		int rows = err ? 0 : PQntuples(r);

		be->listing = op;
		for (int i = 0; i < rows && !op->final_sent; i++) {
			struct sip_str aliases[PG_ALIASES_MAX];
			struct dir_user u;

			res_user(r, i, &u, aliases, PG_ALIASES_MAX);
			op->cb.user_iter(0, &u, op->arg);
		}
		be->listing = NULL;
		if (op->final_sent)
			break;
		if (rows == PG_PAGE_ROWS) {
			param_i64_set(op, 0, res_i64(r, rows - 1, 8));
			PQclear(op->res);
			op->res = NULL;
			op->query_done = false;
			err = op_resubmit(be, op);
			if (!err)
				return;
		}
		op->cb.user_iter(err, NULL, op->arg);
		break;
	}
	case PG_LEASE:
		be->lease_pending = false;
		be->lease = !err && r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] != 0;
		be->lease_other = !err && !be->lease;
		if (be->lease)
			log_info("pg: this instance holds the sweeper lease");
		break;
	case PG_AUTOSWEEP: {
		int64_t n = (!err && r) ? res_i64(r, 0, 0) : 0;

		if (n > 0)
			log_debug("pg: swept %lld expired bindings", (long long)n);
		/* A full batch means more are left: the next one now, a bounded number of times
		 * per tick, each its own short transaction. */
		if (n >= PG_SWEEP_BATCH && be->lease && ++be->sweep_rounds < PG_SWEEP_REPEAT &&
		    !be->closing)
			be_autosweep(be);
		break;
	}
	case PG_SETUP:
		break;
	}
	op_free(op);
}

/* ---- sending -------------------------------------------------------------------------- */

static void conn_watch(struct pg_conn *c, short what);

/* Send op's statement on c (READY, or coming up for PG_SETUP), followed by a Sync (the end
 * of its transaction) when sync. Returns 0 or EIO. */
static int conn_send(struct pg_conn *c, struct pg_op *op, bool sync)
{
	const char *values[PG_MAX_PARAMS];
	int formats[PG_MAX_PARAMS];
	int ok;

	for (int i = 0; i < op->nparams; i++) {
		values[i] = op->null[i] ? NULL : op->buf.p + op->off[i];
		formats[i] = 1;
	}
	if (op->prepare >= 0) {
		const struct pg_stmt_def *s = &pg_stmts[op->prepare];

		ok = PQsendPrepare(c->pc, s->name, s->sql, s->nparams, s->types);
	} else if (op->stmt >= 0) {
		ok = PQsendQueryPrepared(c->pc, pg_stmts[op->stmt].name, op->nparams, values,
					 op->lengths, formats, 1);
	} else {
		ok = PQsendQueryParams(c->pc, op->text, 0, NULL, NULL, NULL, NULL, 1);
	}
	if (!ok || (sync && !PQpipelineSync(c->pc))) {
		log_warn("pg[%u]: send failed: %s", c->idx, PQerrorMessage(c->pc));
		return EIO;
	}
	if (!c->head && !c->whead)
		c->progress_ns = clock_mono_ns();
	op->conn = c;
	op->next = NULL;
	op->sync_after = sync;
	if (c->tail)
		c->tail->next = op;
	else
		c->head = op;
	c->tail = op;
	c->n_inflight++;
	if (!sync)
		return 0;
	c->n_syncs++;
	switch (PQflush(c->pc)) {
	case 0:
		break;
	case 1:
		c->want_write = true;
		conn_watch(c, EV_READ | EV_WRITE);
		break;
	default:
		return EIO; /* the op is in flight: conn_fail completes it */
	}
	return 0;
}

/* Take the op out of the waiting queue. */
static void queue_unlink(struct pg_be *be, struct pg_op *op)
{
	struct pg_op **pp = &be->qhead, *prev = NULL;

	while (*pp && *pp != op) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = op->next;
	if (be->qtail == op)
		be->qtail = prev;
	be->n_queued--;
	op->next = NULL;
}

static bool be_reachable(const struct pg_be *be)
{
	for (unsigned i = 0; i < be->pool; i++) {
		if (be->conns[i].state != PC_DOWN)
			return true;
	}
	return false;
}

static bool conn_usable(const struct pg_conn *c)
{
	return c->state == PC_READY && !c->fail_err;
}

/* Can c take op into the batch being assembled? */
static bool conn_room(const struct pg_conn *c, const struct pg_op *op)
{
	if (!conn_usable(c) || c->n_syncs >= PG_SYNCS_INFLIGHT || c->batch_closed ||
	    c->n_batch >= PG_BATCH_MAX)
		return false;
	return !op->alone || c->n_batch == 0;
}

/* The connection for op, or NULL if it must wait. Ops on one AOR keep to the connection
 * the AOR hashes to while that one is up: one pipeline runs them in submission order (a
 * query after a REGISTER sees it) and our own connections never queue on each other's
 * AOR lock. Everything else goes to the least loaded connection. */
static struct pg_conn *be_pick(struct pg_be *be, const struct pg_op *op)
{
	struct pg_conn *best = NULL;

	if (op->has_affinity) {
		struct pg_conn *c = &be->conns[op->affinity % be->pool];

		if (conn_usable(c))
			return conn_room(c, op) ? c : NULL;
	}
	for (unsigned k = 0; k < be->pool; k++) {
		struct pg_conn *c = &be->conns[(be->rr + k) % be->pool];

		if (!conn_room(c, op))
			continue;
		if (!best || c->n_syncs + c->n_batch < best->n_syncs + best->n_batch)
			best = c;
	}
	if (best)
		be->rr = (best->idx + 1) % be->pool;
	return best;
}

/* Send c's assembled batch: its statements in lock-key order (stable), one Sync. */
static void conn_flush_batch(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	unsigned n = c->n_batch, sent = 0;

	for (unsigned i = 1; i < n; i++) { /* insertion sort: stable, n <= PG_BATCH_MAX */
		struct pg_op *op = c->batch[i];
		unsigned j = i;

		for (; j > 0 && c->batch[j - 1]->order > op->order; j--)
			c->batch[j] = c->batch[j - 1];
		c->batch[j] = op;
	}
	c->n_batch = 0;
	c->batch_closed = false;
	for (; sent < n; sent++) {
		if (conn_send(c, c->batch[sent], sent + 1 == n))
			break;
	}
	if (sent == n)
		return;
	/* A send failed: what did not go out waits again (in front), the link is reset. */
	for (unsigned i = n; i-- > sent;) {
		struct pg_op *op = c->batch[i];

		if (op->conn == c)
			continue;
		op->next = be->qhead;
		be->qhead = op;
		if (!be->qtail)
			be->qtail = op;
		be->n_queued++;
	}
	c->fail_err = EIO;
	event_active(&c->failev, EV_TIMEOUT, 0);
}

/* Send what waits, oldest first, as one batch per connection with room. */
static void be_pump(struct pg_be *be)
{
	struct pg_op *op = be->qhead, *next;
	bool any = false;

	for (; op; op = next) {
		struct pg_conn *c = be_pick(be, op);

		next = op->next;
		if (!c)
			continue;
		queue_unlink(be, op);
		c->batch[c->n_batch++] = op;
		c->batch_closed = op->alone;
		any = true;
	}
	for (unsigned i = 0; any && i < be->pool; i++) {
		if (be->conns[i].n_batch)
			conn_flush_batch(&be->conns[i]);
	}
}

static void conn_pump(struct pg_conn *c)
{
	be_pump(c->be);
}

/* Queue or send a new op. Returns 0, EAGAIN (no connection up, or the queue is full). */
static int op_submit(struct pg_be *be, struct pg_op *op)
{
	if (op->buf.oom) {
		op_free(op);
		return ENOMEM;
	}
	if (be->closing || !be_reachable(be) || be->n_queued >= be->max_queued) {
		op_free(op);
		return EAGAIN;
	}
	op->next = NULL;
	if (be->qtail)
		be->qtail->next = op;
	else
		be->qhead = op;
	be->qtail = op;
	be->n_queued++;
	op_arm(op);
	be_pump(be);
	return 0;
}

/* Queue an op again (the next page of an iterate), in front of newer work. */
static int op_resubmit(struct pg_be *be, struct pg_op *op)
{
	if (be->closing || !be_reachable(be))
		return EAGAIN;
	op->next = be->qhead;
	be->qhead = op;
	if (!be->qtail)
		be->qtail = op;
	be->n_queued++;
	op_arm(op);
	be_pump(be);
	return 0;
}

/* The op's timer: a waiting op fails alone. A sent one takes its connection down only
 * when the connection itself has been silent for timeout_ms: the op may have spent most
 * of its time in the queue, and a server that keeps answering is busy, not dead. Resetting
 * a busy connection would throw away the work in flight and add a reconnect to the load
 * that made it slow. */
static void op_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pg_op *op = arg;
	struct pg_be *be = op->be;

	(void)fd;
	(void)what;
	op->timer_on = false;
	be_enter(be);
	if (op->conn) {
		int64_t silent_ms = (clock_mono_ns() - op->conn->progress_ns) / CLOCK_NS_PER_MS;

		if (silent_ms < be->timeout_ms) {
			op_arm_ms(op, be->timeout_ms - (unsigned)silent_ms);
		} else {
			log_warn("pg[%u]: no answer within %u ms, resetting the connection",
				 op->conn->idx, be->timeout_ms);
			conn_fail(op->conn, ETIMEDOUT);
		}
	} else {
		queue_unlink(be, op);
		op->err = ETIMEDOUT;
		op_deliver(op);
	}
	be_leave(be);
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_io(evutil_socket_t fd, short what, void *arg);

static void conn_unwatch(struct pg_conn *c)
{
	if (c->io_on)
		event_del(&c->io);
	c->io_on = false;
}

/* Watch the connection's current socket for what (EV_READ/EV_WRITE; persistent once up). */
static void conn_watch(struct pg_conn *c, short what)
{
	evutil_socket_t fd = PQsocket(c->pc);
	short flags = what | (c->state >= PC_SETUP ? EV_PERSIST : 0);

	if (c->io_on && c->io_fd == fd && c->io_what == flags)
		return;
	conn_unwatch(c);
	if (fd < 0)
		return;
	event_assign(&c->io, c->be->base, fd, flags, conn_io, c);
	if (event_add(&c->io, NULL) == 0) {
		c->io_on = true;
		c->io_fd = fd;
		c->io_what = flags;
	}
}

static void conn_timer(evutil_socket_t fd, short what, void *arg);

static void conn_schedule(struct pg_conn *c, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_del(&c->timer);
	evtimer_add(&c->timer, &tv);
}

/* A uniform draw in 0..n-1 for the reconnect jitter, from getrandom(2): every instance of
 * a cluster draws differently, so after a database restart they do not all reconnect in
 * the same instant (random() unseeded gives every process the same sequence). Rare (once
 * per failed connect), so a system call per draw costs nothing. */
static unsigned backoff_jitter(unsigned n)
{
	uint64_t v;

	if (n <= 1)
		return 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		/* No entropy yet (early boot) or no getrandom: still distinct per process. */
		uint64_t seed[2] = {(uint64_t)clock_mono_ns(), (uint64_t)getpid()};

		v = XXH3_64bits(seed, sizeof(seed));
	}
	return (unsigned)(v % n);
}

/* Fail every op in flight on c with err, close it and plan the next attempt. */
static void conn_fail(struct pg_conn *c, int err)
{
	struct pg_be *be = c->be;
	struct pg_op *op;
	unsigned delay;

	conn_unwatch(c);
	evtimer_del(&c->timer);
	event_del(&c->failev);
	if (c->state == PC_READY || c->state == PC_SETUP)
		log_warn("pg[%u]: connection lost (%s), reconnecting", c->idx, strerror(err));
	else if (!c->logged_down)
		log_warn("pg[%u]: cannot connect: %s", c->idx,
			 c->pc ? PQerrorMessage(c->pc) : strerror(err));
	c->logged_down = true;
	if (c->pc)
		PQfinish(c->pc);
	c->pc = NULL;
	c->state = PC_DOWN;
	c->fail_err = 0;
	c->want_write = false;
	c->setup_left = 0;
	if (c->idx == 0) {
		be->lease = false; /* the session lock went with the session */
		be->lease_pending = false;
		be->lease_other = false;
	}
	for (;;) {
		/* The waiting ones first: they were sent first. */
		struct pg_op **hp = c->whead ? &c->whead : &c->head;

		op = *hp;
		if (!op)
			break;
		*hp = op->next;
		if (!c->whead)
			c->wtail = NULL;
		if (!c->head)
			c->tail = NULL;
		c->n_inflight--;
		op->conn = NULL;
		op->err = err;
		PQclear(op->res);
		op->res = NULL;
		op_deliver(op);
		if (be->closing)
			return; /* a callback closed the backend: close() took over */
	}
	c->tail = NULL;
	c->n_inflight = 0;
	c->n_syncs = 0;
	/* Nothing can carry the waiting ops any more: fail them now rather than at timeout. */
	if (!be_reachable(be)) {
		while ((op = be->qhead)) {
			queue_unlink(be, op);
			op->err = err == ETIMEDOUT ? ETIMEDOUT : ECONNREFUSED;
			op_deliver(op);
			if (be->closing)
				return;
		}
	}
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
	if (c->backoff_ms > PG_BACKOFF_MAX_MS)
		c->backoff_ms = PG_BACKOFF_MAX_MS;
	delay = c->backoff_ms - c->backoff_ms / 8 + backoff_jitter(c->backoff_ms / 4 + 1);
	log_info("pg[%u]: reconnecting in %u ms", c->idx, delay);
	conn_schedule(c, delay);
}

static void conn_failev(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	(void)what;
	be_enter(be);
	if (c->state != PC_DOWN)
		conn_fail(c, c->fail_err ? c->fail_err : EIO);
	be_leave(be);
}

static struct pg_op *setup_op(struct pg_conn *c, const char *text, int prepare)
{
	struct pg_op *op = op_new(c->be, PG_SETUP, NULL);

	if (!op)
		return NULL;
	op->text = text;
	op->prepare = prepare;
	return op;
}

/* Connected: pipeline mode, session settings, prepared statements, LISTEN (conn 0). */
static void conn_setup(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	const char *texts[2] = {be->lock_timeout_sql,
				c->idx == 0 ? "LISTEN sipreg_users" : NULL};

	if (PQsetnonblocking(c->pc, 1) != 0 || !PQenterPipelineMode(c->pc)) {
		conn_fail(c, EIO);
		return;
	}
	c->state = PC_SETUP;
	conn_watch(c, EV_READ);
	for (int i = 0; i < 2 + STMT_N; i++) {
		struct pg_op *op;

		if (i < 2 && !texts[i])
			continue;
		op = setup_op(c, i < 2 ? texts[i] : NULL, i < 2 ? -1 : i - 2);
		if (!op) {
			conn_fail(c, ENOMEM);
			return;
		}
		if (conn_send(c, op, true)) {
			if (op->conn != c)
				op_free(op);
			conn_fail(c, EIO);
			return;
		}
		c->setup_left++;
	}
}

static void lease_try(struct pg_be *be)
{
	struct pg_conn *c = &be->conns[0];
	struct pg_op *op;

	if (be->lease || be->lease_pending || c->state != PC_READY || c->fail_err)
		return;
	op = op_new(be, PG_LEASE, NULL);
	if (!op)
		return;
	op->text = "SELECT pg_try_advisory_lock(" PG_LEASE_KEY ")";
	op_arm(op);
	if (conn_send(c, op, true)) {
		if (op->conn != c)
			op_free(op);
		c->fail_err = EIO;
		event_active(&c->failev, EV_TIMEOUT, 0);
		return;
	}
	be->lease_pending = true;
}

static void conn_ready(struct pg_conn *c)
{
	struct pg_be *be = c->be;

	c->state = PC_READY;
	c->backoff_ms = 0;
	if (c->logged_down)
		log_info("pg[%u]: connected", c->idx);
	c->logged_down = false;
	if (c->idx == 0) {
		cache_flush(be); /* notifications may have been missed while it was down */
		lease_try(be);
	}
	conn_pump(c);
}

/* The Sync of the batch waiting on c came back: its transaction is over, committed unless
 * a statement failed, in which case it rolled back and every op of it fails. Returns false
 * when a callback closed the backend or the connection went down meanwhile. */
static bool conn_batch_done(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	struct pg_op *op;
	int berr = 0;

	for (op = c->whead; op && !berr; op = op->next)
		berr = op->err;
	while ((op = c->whead)) {
		c->whead = op->next;
		if (!c->whead)
			c->wtail = NULL;
		op->next = NULL;
		op->conn = NULL;
		c->n_inflight--;
		if (berr && !op->err) {
			op->err = berr == ECONNRESET ? ECONNRESET : EIO;
			PQclear(op->res);
			op->res = NULL;
		}
		if (op->kind == PG_SETUP) {
			if (op->err) {
				log_err("pg[%u]: session setup failed (is the schema migrated? "
					"run `sipregctl db migrate`)",
					c->idx);
				op_free(op);
				conn_fail(c, EPROTO);
				return false;
			}
			op_free(op);
			if (--c->setup_left == 0 && c->state == PC_SETUP)
				conn_ready(c);
			continue;
		}
		op_deliver(op);
		if (be->closing || c->state == PC_DOWN)
			return false;
	}
	return true;
}

/* Read what the server sent and complete the ops whose Sync has come back. */
static void conn_read(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	PGnotify *nf;
	bool flushed = false;

	if (!PQconsumeInput(c->pc)) {
		conn_fail(c, ECONNRESET);
		return;
	}
	c->progress_ns = clock_mono_ns();
	while ((nf = PQnotifies(c->pc))) {
		if (!flushed)
			cache_flush(be);
		flushed = true;
		PQfreemem(nf);
	}
	while (c->head && c->state != PC_DOWN && !c->fail_err) {
		struct pg_op *op = c->head;
		PGresult *r;

		if (!op->query_done) {
			if (PQisBusy(c->pc))
				break;
			r = PQgetResult(c->pc);
			if (!r) {
				op->query_done = true;
				continue;
			}
			switch (PQresultStatus(r)) {
			case PGRES_TUPLES_OK:
			case PGRES_COMMAND_OK:
				PQclear(op->res);
				op->res = r;
				break;
			case PGRES_PIPELINE_ABORTED:
				op->err = op->err ? op->err : EIO;
				PQclear(r);
				break;
			default: {
				bool broken;
				int err = res_errno(r, &broken);

				log_warn("pg[%u]: %s", c->idx, PQresultErrorMessage(r));
				if (!op->err)
					op->err = err;
				PQclear(r);
				if (broken) {
					conn_fail(c, err);
					return;
				}
				break;
			}
			}
			continue;
		}
		if (op->sync_after) {
			if (PQisBusy(c->pc))
				break;
			r = PQgetResult(c->pc);
			if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
				log_err(
				    "pg[%u]: protocol out of step (expected a pipeline sync)",
				    c->idx);
				PQclear(r);
				conn_fail(c, EPROTO);
				return;
			}
			PQclear(r);
			c->n_syncs--;
		}
		/* The statement is done: it waits with the rest of its batch for the Sync. */
		c->head = op->next;
		if (!c->head)
			c->tail = NULL;
		op->next = NULL;
		if (c->wtail)
			c->wtail->next = op;
		else
			c->whead = op;
		c->wtail = op;
		if (op->sync_after && !conn_batch_done(c))
			return; /* a callback closed the backend or failed the connection */
	}
	if (c->state == PC_READY && !c->fail_err && PQstatus(c->pc) == CONNECTION_BAD)
		conn_fail(c, ECONNRESET);
	else if (c->state == PC_READY)
		conn_pump(c);
}

static void conn_io_run(struct pg_conn *c, short what)
{
	if (c->state == PC_CONNECTING) {
		c->io_on = false; /* one-shot while connecting */
		switch (PQconnectPoll(c->pc)) {
		case PGRES_POLLING_READING:
			conn_watch(c, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			conn_watch(c, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			evtimer_del(&c->timer);
			conn_setup(c);
			return;
		default:
			conn_fail(c, ECONNREFUSED);
			return;
		}
	}
	if (c->state == PC_DOWN)
		return;
	if (what & EV_WRITE) {
		int rc = PQflush(c->pc);

		if (rc < 0) {
			conn_fail(c, ECONNRESET);
			return;
		}
		if (rc == 0 && c->want_write) {
			c->want_write = false;
			conn_watch(c, EV_READ);
		}
	}
	if (what & EV_READ)
		conn_read(c);
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	be_enter(be);
	conn_io_run(c, what);
	be_leave(be);
}

static void conn_start(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	/* Our default first: a later keyword (the operator's conninfo) overrides it. The
	 * connect is bounded by our own timer (libpq's connect_timeout is for blocking use). */
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"sipregd", be->conninfo, NULL};

	c->pc = PQconnectStartParams(keys, vals, 1);
	if (!c->pc) {
		conn_fail(c, ENOMEM);
		return;
	}
	if (PQstatus(c->pc) == CONNECTION_BAD) {
		conn_fail(c, ECONNREFUSED);
		return;
	}
	c->state = PC_CONNECTING;
	conn_schedule(c, be->timeout_ms); /* the connect timeout */
	conn_watch(c, EV_WRITE);
	if (!c->io_on)
		conn_fail(c, EIO);
}

/* Connecting: the connect timed out. Down: the backoff is over, try again. */
static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	(void)what;
	be_enter(be);
	if (c->state == PC_DOWN)
		conn_start(c);
	else if (c->state == PC_CONNECTING || c->state == PC_SETUP)
		conn_fail(c, ETIMEDOUT);
	be_leave(be);
}

/* ---- deferred completions and the sweeper --------------------------------------------- */

static void be_defer_run(evutil_socket_t fd, short what, void *arg)
{
	struct pg_be *be = arg;
	struct pg_op *op;

	(void)fd;
	(void)what;
	be_enter(be);
	while (!be->closing && (op = be->dhead)) {
		be->dhead = op->next;
		if (!be->dhead)
			be->dtail = NULL;
		op->next = NULL;
		op_deliver(op);
	}
	be_leave(be);
}

/* Complete op through the loop (it carries its answer already), never inside the call. */
static void defer_op(struct pg_be *be, struct pg_op *op)
{
	op->next = NULL;
	if (be->dtail)
		be->dtail->next = op;
	else
		be->dhead = op;
	be->dtail = op;
	event_active(&be->defer_ev, EV_TIMEOUT, 0);
}

/* Send the lease holder's next sweep statement (alone: it takes row locks of many AORs). */
static void be_autosweep(struct pg_be *be)
{
	struct pg_op *op = op_new(be, PG_AUTOSWEEP, NULL);

	if (!op)
		return;
	op->stmt = STMT_SWEEP;
	op->alone = true;
	param_null(op, 0);
	param_i32(op, 1, PG_SWEEP_BATCH);
	op_submit(be, op); /* not queued when down: the next tick tries again */
}

static void be_sweep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pg_be *be = arg;
	struct timeval tv = {.tv_sec = PG_SWEEP_INTERVAL_S};

	(void)fd;
	(void)what;
	if (be->lease) {
		be->sweep_rounds = 0;
		be_autosweep(be);
	} else {
		lease_try(be);
	}
	evtimer_add(&be->sweep_ev, &tv);
}

/* ---- the vtable ------------------------------------------------------------------------ */

static void pg_close(void *p);

/* location.migrate: bring the schema up to date before the loop runs. Synchronous on
 * purpose: it runs once at start-up, before any request is read, and the daemon must not
 * serve against a schema it does not know. Concurrency-safe like `sipregctl db migrate`
 * (the runner serialises on an advisory lock). Returns 0 or EIO. */
static int pg_migrate_at_start(const char *conninfo)
{
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"sipregd-migrate", conninfo, NULL};
	PGconn *mc = PQconnectdbParams(keys, vals, 1);
	char err[512];
	int from = 0, to = 0, rc = EIO;

	if (!mc) {
		log_err("pg: migrate: out of memory");
		return ENOMEM;
	}
	if (PQstatus(mc) != CONNECTION_OK) {
		log_err("pg: migrate: cannot connect: %s", PQerrorMessage(mc));
		goto out;
	}
	if (pg_schema_migrate(mc, &from, &to, err, sizeof(err)) != 0) {
		log_err("pg: migrate: %s", err);
		goto out;
	}
	if (from != to)
		log_info("pg: migrated the schema from version %d to %d", from, to);
	else
		log_info("pg: schema at version %d, up to date", to);
	rc = 0;
out:
	PQfinish(mc);
	return rc;
}

static int pg_open(void **bep, const void *confp, struct event_base *base,
		   const char *instance_id)
{
	const struct pg_conf *conf = confp;
	struct pg_be *be;
	struct timeval tv = {.tv_sec = 1};
	int err = ENOMEM;

	(void)instance_id; /* requests carry it (the owner column); the lease is per session */
	if (!conf->conninfo) {
		log_err("pg: no conninfo configured (location/directory: {backend: pg, "
			"conninfo: \"...\"})");
		return EINVAL;
	}
	if (conf->migrate) {
		int merr = pg_migrate_at_start(conf->conninfo);

		if (merr)
			return merr;
	}
	be = calloc(1, sizeof(*be));
	if (!be)
		return ENOMEM;
	be->base = base;
	be->pool = conf->pool ? conf->pool : PG_DEFAULT_POOL;
	if (be->pool > PG_MAX_POOL)
		be->pool = PG_MAX_POOL;
	be->timeout_ms = conf->timeout_ms ? conf->timeout_ms : PG_DEFAULT_TIMEOUT_MS;
	be->max_queued = (size_t)be->pool * PG_QUEUE_PER_CONN;
	/* Lock waits end on the server before our own timer gives up on the connection. */
	snprintf(be->lock_timeout_sql, sizeof(be->lock_timeout_sql), "SET lock_timeout = %u",
		 be->timeout_ms * 3 / 4 ? be->timeout_ms * 3 / 4 : 1);
	be->conninfo = strdup(conf->conninfo);
	be->conns = calloc(be->pool, sizeof(*be->conns));
	if (!be->conninfo || !be->conns || hmap_init(&be->cache, 64))
		goto fail;
	event_assign(&be->defer_ev, base, -1, 0, be_defer_run, be);
	evtimer_assign(&be->sweep_ev, base, be_sweep_tick, be);
	for (unsigned i = 0; i < be->pool; i++) {
		struct pg_conn *c = &be->conns[i];

		c->be = be;
		c->idx = i;
		evtimer_assign(&c->timer, base, conn_timer, c);
		event_assign(&c->failev, base, -1, 0, conn_failev, c);
	}
	for (unsigned i = 0; i < be->pool; i++)
		conn_start(&be->conns[i]);
	evtimer_add(&be->sweep_ev, &tv);
	*bep = be;
	return 0;
fail:
	pg_close(be);
	return err;
}

static void pg_close(void *p)
{
	struct pg_be *be = p;
	struct pg_op *op;

	if (!be)
		return;
	be->closing = true;
	if (be->listing && !be->listing->final_sent) {
		be->listing->final_sent = true;
		if (be->listing->kind == PG_USER_ITER)
			be->listing->cb.user_iter(ECANCELED, NULL, be->listing->arg);
		else
			be->listing->cb.iterate(ECANCELED, NULL, be->listing->arg);
	}
	for (unsigned i = 0; be->conns && i < be->pool; i++) {
		struct pg_conn *c = &be->conns[i];

		if (!c->be)
			continue; /* open failed before this one was set up */
		conn_unwatch(c);
		evtimer_del(&c->timer);
		event_del(&c->failev);
		for (;;) {
			struct pg_op **hp = c->whead ? &c->whead : &c->head;

			op = *hp;
			if (!op)
				break;
			*hp = op->next;
			op->conn = NULL;
			op->err = ECANCELED;
			PQclear(op->res);
			op->res = NULL;
			op_deliver(op);
		}
		c->tail = NULL;
		c->wtail = NULL;
		if (c->pc)
			PQfinish(c->pc);
		c->pc = NULL;
		c->state = PC_DOWN;
	}
	while ((op = be->qhead)) {
		queue_unlink(be, op);
		op->err = ECANCELED;
		op_deliver(op);
	}
	while ((op = be->dhead)) {
		be->dhead = op->next;
		if (!be->dhead)
			be->dtail = NULL;
		op->err = ECANCELED;
		cached_unref(op->hit);
		op->hit = NULL;
		op_deliver(op);
	}
	if (be->busy) {
		be->dead = true; /* inside one of our handlers: it frees on the way out */
		return;
	}
	be_free(be);
}

static void be_free(struct pg_be *be)
{
	if (event_initialized(&be->defer_ev))
		event_del(&be->defer_ev);
	if (event_initialized(&be->sweep_ev))
		evtimer_del(&be->sweep_ev);
	cache_flush(be);
	hmap_destroy(&be->cache);
	free(be->scratch);
	free(be->conns);
	free(be->conninfo);
	free(be);
}

static int pg_apply(void *p, const struct reg_request *req, location_apply_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_APPLY, arg);
	size_t n = req->n_changes;
	bool q_null = false;

	if (!op)
		return ENOMEM;
	op->cb.apply = cb;
	op->stmt = STMT_APPLY;
	param_bytes(op, 0, &req->aor);
	op->aor_off = op->off[0];
	op->aor_len = req->aor.len;
	op->has_affinity = true;
	op->affinity = hmap_hash(req->aor.p ? req->aor.p : "", req->aor.len);
	op->order = lock_key(&req->aor);
	param_bytes(op, 1, &req->call_id);
	param_i64(op, 2, req->cseq);
	param_bool(op, 3, req->wildcard);
	array_begin(op, 4, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		buf_i32(&op->buf, (int32_t)req->changes[i].contact.len);
		buf_put(&op->buf, req->changes[i].contact.p, req->changes[i].contact.len);
	}
	param_end(op, 4);
	array_begin(op, 5, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		buf_i32(&op->buf, (int32_t)req->changes[i].key.len);
		buf_put(&op->buf, req->changes[i].key.p, req->changes[i].key.len);
	}
	param_end(op, 5);
	array_begin(op, 6, OID_INT4, n, false);
	for (size_t i = 0; i < n; i++) {
		buf_i32(&op->buf, 4);
		buf_i32(&op->buf, clamp_i32(req->changes[i].expires));
	}
	param_end(op, 6);
	for (size_t i = 0; i < n; i++)
		q_null |= req->changes[i].q == Q_NONE;
	array_begin(op, 7, OID_INT4, n, q_null);
	for (size_t i = 0; i < n; i++) {
		if (req->changes[i].q == Q_NONE) {
			buf_i32(&op->buf, -1);
			continue;
		}
		buf_i32(&op->buf, 4);
		buf_i32(&op->buf, req->changes[i].q);
	}
	param_end(op, 7);
	array_begin(op, 8, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		buf_i32(&op->buf, (int32_t)req->changes[i].instance.len);
		buf_put(&op->buf, req->changes[i].instance.p, req->changes[i].instance.len);
	}
	param_end(op, 8);
	array_begin(op, 9, OID_INT8, n, false);
	for (size_t i = 0; i < n; i++) {
		buf_i32(&op->buf, 8);
		buf_i64(&op->buf, req->changes[i].reg_id);
	}
	param_end(op, 9);
	param_i32(op, 10, clamp_i32(req->max_contacts));
	param_bytes(op, 11, &req->path);
	param_bytes(op, 12, &req->user_agent);
	{
		struct sip_str proto = sip_str_c(sip_proto_name(req->source.proto));
		size_t iplen = strnlen(req->source.ip, sizeof(req->source.ip));
		struct sip_str ip = {.p = req->source.ip, .len = iplen};

		param_bytes(op, 13, &proto);
		param_bytes(op, 14, &ip);
	}
	param_i32(op, 15, req->source.port);
	param_i64(op, 16, (int64_t)req->source.conn_id);
	param_bytes(op, 17, &req->instance_id);
	param_i64(op, 18, req->now);
	param_i64(op, 19, (int64_t)op->order); /* the same bits, as PostgreSQL's bigint */
	for (size_t i = 0; i < n; i++) {
		if (req->changes[i].contact.len > INT32_MAX / 2 ||
		    req->changes[i].key.len > INT32_MAX / 2 ||
		    req->changes[i].instance.len > INT32_MAX / 2)
			op->buf.oom = true;
	}
	return op_submit(be, op);
}

static int pg_fetch(void *p, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		    void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_FETCH, arg);

	if (!op)
		return ENOMEM;
	op->cb.fetch = cb;
	op->stmt = STMT_FETCH;
	param_bytes(op, 0, aor);
	op->aor_off = op->off[0];
	op->aor_len = aor->len;
	op->has_affinity = true;
	op->affinity = hmap_hash(aor->p ? aor->p : "", aor->len);
	op->order = lock_key(aor);
	param_i64(op, 1, now);
	return op_submit(be, op);
}

static int pg_iterate(void *p, int64_t now, location_iter_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_ITERATE, arg);

	if (!op)
		return ENOMEM;
	op->cb.iterate = cb;
	op->stmt = STMT_ITERATE;
	op->alone = true;
	param_i64(op, 0, now);
	param_i64(op, 1, 0); /* the page key: ids start at 1 */
	return op_submit(be, op);
}

/* Valid UTF-8 without NUL: what a text parameter (the domain) may carry. */
static bool utf8_text_ok(const struct sip_str *s)
{
	const unsigned char *p = (const unsigned char *)s->p;
	size_t i = 0;

	while (i < s->len) {
		unsigned char ch = p[i];
		size_t n;

		if (ch == 0)
			return false;
		if (ch < 0x80) {
			i++;
			continue;
		}
		if (ch >= 0xc2 && ch <= 0xdf)
			n = 1;
		else if (ch >= 0xe0 && ch <= 0xef)
			n = 2;
		else if (ch >= 0xf0 && ch <= 0xf4)
			n = 3;
		else
			return false;
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= s->len || (p[i + k] & 0xc0) != 0x80)
				return false;
		}
		i += n + 1;
	}
	return true;
}

static int pg_find_user(void *p, const struct sip_str *user, const struct sip_str *domain,
			directory_find_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op;
	struct pg_cached_user *cu;
	size_t klen;

	if (user->len > 4096 || domain->len > 1024)
		return EINVAL;
	op = op_new(be, PG_FIND_USER, arg);
	if (!op)
		return ENOMEM;
	op->cb.find_user = cb;
	op->stmt = STMT_FIND_USER;
	/* The cache key sits in the buffer after the parameters: user '@' domain. */
	param_bytes(op, 0, user);
	param_bytes(op, 1, domain);
	op->user_off = op->buf.len;
	buf_put(&op->buf, "", 0);
	{
		char key[4096 + 1 + 1024];

		klen = cache_key(key, user, domain);
		buf_put(&op->buf, key, klen);
		op->user_len = user->len;
		op->domain_len = domain->len;
		if (op->buf.oom) {
			op_free(op);
			return ENOMEM;
		}
		cu = cache_find(be, key, klen);
		if (!cu && !utf8_text_ok(domain)) {
			/* No domain is spelled like that: a negative answer without asking. */
			cu = calloc(1, sizeof(*cu) + klen);
			if (!cu) {
				op_free(op);
				return ENOMEM;
			}
			cu->refs = 1;
			cu->key = cu->data;
			memcpy(cu->key, key, klen);
			cu->key_len = klen;
			op->hit = cu;
		} else if (cu) {
			cu->refs++;
			op->hit = cu;
		}
	}
	if (op->hit) {
		defer_op(be, op); /* answer from the cache, after the call returns */
		return 0;
	}
	return op_submit(be, op);
}

/* The columns add and update share: $1..$8 of STMT_USER_ADD/UPDATE. */
static int user_params(struct pg_op *op, const struct dir_user *u)
{
	if (u->username.len == 0 || u->username.len > 4096 || !utf8_text_ok(&u->domain) ||
	    u->domain.len == 0 || u->n_aliases > 4096)
		return EINVAL;
	/* Only HA1s are stored: a clear password is the caller's to turn into them. */
	if (u->password.len)
		return EINVAL;
	param_bytes(op, 0, &u->username);
	param_bytes(op, 1, &u->domain);
	param_bytes(op, 2, &u->ha1_md5);
	param_bytes(op, 3, &u->ha1_sha256);
	param_bool(op, 4, u->enabled);
	param_bool(op, 5, u->auth_off);
	param_i32(op, 6, clamp_i32(u->max_contacts));
	array_begin(op, 7, OID_BYTEA, u->n_aliases, false);
	for (size_t i = 0; i < u->n_aliases; i++) {
		buf_i32(&op->buf, (int32_t)u->aliases[i].len);
		buf_put(&op->buf, u->aliases[i].p, u->aliases[i].len);
	}
	param_end(op, 7);
	return op->buf.oom ? ENOMEM : 0;
}

static int pg_user_put(void *p, const struct dir_user *u, enum dir_put mode, location_done_h *cb,
		       void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_DONE, arg);
	int err;

	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = mode == DIR_PUT_CREATE ? STMT_USER_ADD : STMT_USER_UPDATE;
	op->none_err = mode == DIR_PUT_CREATE ? EEXIST : ENOENT;
	op->alone = true;
	err = user_params(op, u);
	if (err) {
		op_free(op);
		return err;
	}
	return op_submit(be, op);
}

static int pg_user_del(void *p, const struct sip_str *user, const struct sip_str *domain,
		       location_done_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op;

	if (!utf8_text_ok(domain))
		return EINVAL;
	op = op_new(be, PG_DONE, arg);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = STMT_USER_DEL;
	op->none_err = ENOENT;
	op->alone = true;
	param_bytes(op, 0, user);
	param_bytes(op, 1, domain);
	return op_submit(be, op);
}

static int pg_user_iter(void *p, directory_iter_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_USER_ITER, arg);

	if (!op)
		return ENOMEM;
	op->cb.user_iter = cb;
	op->stmt = STMT_USER_ITER;
	op->alone = true;
	param_i64(op, 0, 0); /* the page key: ids start at 1 */
	return op_submit(be, op);
}

static int pg_unbind(void *p, const struct sip_str *aor, const struct sip_str *contact,
		     location_done_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = op_new(be, PG_UNBIND, arg);

	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = STMT_UNBIND;
	op->alone = true;
	param_bytes(op, 0, aor);
	if (contact)
		param_bytes(op, 1, contact);
	else
		param_null(op, 1);
	return op_submit(be, op);
}

const struct location_backend location_backend_pg = {
    .name = "pg",
    .configure = pg_configure,
    .conf_free = pg_conf_free,
    .same_store = pg_same_store,
    .open = pg_open,
    .close = pg_close,
    .apply = pg_apply,
    .fetch = pg_fetch,
    .iterate = pg_iterate,
    .find_user = pg_find_user,
    .user_put = pg_user_put,
    .user_del = pg_user_del,
    .user_iter = pg_user_iter,
    .unbind = pg_unbind,
};
