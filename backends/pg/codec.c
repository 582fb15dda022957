/* PostgreSQL's binary format: an op's parameters as the server reads them (byte strings
 * stay bytes, NUL included), and the columns of a result read back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- parameter encoding (binary format) -------------------------------------------- */

void pg_buf_put(struct pg_buf *b, const void *p, size_t len)
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

void pg_buf_i32(struct pg_buf *b, int32_t v)
{
	uint32_t u = (uint32_t)v;
	unsigned char x[4] = {(unsigned char)(u >> 24), (unsigned char)(u >> 16),
			      (unsigned char)(u >> 8), (unsigned char)u};

	pg_buf_put(b, x, 4);
}

void pg_buf_i64(struct pg_buf *b, int64_t v)
{
	uint64_t u = (uint64_t)v;
	unsigned char x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(u >> (56 - 8 * i));
	pg_buf_put(b, x, 8);
}

/* Start parameter i at the current end of the buffer. */
static void param_begin(struct pg_op *op, int i)
{
	op->off[i] = op->buf.len;
	op->null[i] = false;
	if (op->nparams < i + 1)
		op->nparams = i + 1;
}

void pg_param_end(struct pg_op *op, int i)
{
	op->lengths[i] = (int)(op->buf.len - op->off[i]);
}

void pg_param_bytes(struct pg_op *op, int i, const struct sip_str *s)
{
	param_begin(op, i);
	if (s->len > INT32_MAX / 2)
		op->buf.oom = true;
	else
		pg_buf_put(&op->buf, s->p, s->len);
	pg_param_end(op, i);
}

void pg_param_i32(struct pg_op *op, int i, int32_t v)
{
	param_begin(op, i);
	pg_buf_i32(&op->buf, v);
	pg_param_end(op, i);
}

void pg_param_i64(struct pg_op *op, int i, int64_t v)
{
	param_begin(op, i);
	pg_buf_i64(&op->buf, v);
	pg_param_end(op, i);
}

/* Rewrite an int8 parameter in place (the next page of an iterate). */
void pg_param_i64_set(struct pg_op *op, int i, int64_t v)
{
	uint64_t u = (uint64_t)v;
	unsigned char *p = (unsigned char *)op->buf.p + op->off[i];

	for (int k = 0; k < 8; k++)
		p[k] = (unsigned char)(u >> (56 - 8 * k));
}

void pg_param_bool(struct pg_op *op, int i, bool v)
{
	unsigned char x = v ? 1 : 0;

	param_begin(op, i);
	pg_buf_put(&op->buf, &x, 1);
	pg_param_end(op, i);
}

void pg_param_null(struct pg_op *op, int i)
{
	param_begin(op, i);
	op->null[i] = true;
	op->lengths[i] = 0;
}

/* One-dimensional array header (array_recv's format); elements follow. */
void pg_array_begin(struct pg_op *op, int i, Oid elem, size_t n, bool has_null)
{
	param_begin(op, i);
	pg_buf_i32(&op->buf, n ? 1 : 0);
	pg_buf_i32(&op->buf, has_null ? 1 : 0);
	pg_buf_i32(&op->buf, (int32_t)elem);
	if (n) {
		pg_buf_i32(&op->buf, (int32_t)n);
		pg_buf_i32(&op->buf, 1);
	}
}

/* The AOR's lock key, and its statement's place in a batch: one value for both, so every
 * transaction of every instance takes AOR locks in one global order (sipreg_apply locks
 * exactly this key). XXH3 unseeded, unlike hmap_hash, so every process computes the same
 * key; ops without an AOR keep 0 and take no locks, so where they sort does not matter. */
uint64_t pg_lock_key(const struct sip_str *aor)
{
	return XXH3_64bits(aor->p ? aor->p : "", aor->len);
}

int32_t pg_clamp_i32(uint32_t v)
{
	return v > (uint32_t)INT32_MAX ? INT32_MAX : (int32_t)v;
}

/* ---- result decoding (binary format) ----------------------------------------------- */

uint32_t pg_get_u32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

int64_t pg_res_i64(const PGresult *r, int row, int col)
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

int32_t pg_res_i32(const PGresult *r, int row, int col, int32_t if_null)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4)
		return if_null;
	return (int32_t)pg_get_u32(PQgetvalue(r, row, col));
}

struct sip_str pg_res_str(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return SIP_STR_NULL;
	return (struct sip_str){.p = PQgetvalue(r, row, col),
				.len = (size_t)PQgetlength(r, row, col)};
}

/* Fill b from one row of the binding columns; strings borrow from r. */
void pg_res_binding(const PGresult *r, int row, const struct sip_str *aor,
			struct binding *b)
{
	struct sip_str s;

	memset(b, 0, sizeof(*b));
	b->aor = aor ? *aor : pg_res_str(r, row, COL_AOR);
	b->contact = pg_res_str(r, row, COL_CONTACT);
	b->key = pg_res_str(r, row, COL_KEY);
	b->expires_at = pg_res_i64(r, row, COL_EXPIRES_AT);
	b->q = (int16_t)pg_res_i32(r, row, COL_Q, Q_NONE);
	b->call_id = pg_res_str(r, row, COL_CALL_ID);
	b->cseq = (uint32_t)pg_res_i64(r, row, COL_CSEQ);
	b->path = pg_res_str(r, row, COL_PATH);
	b->instance = pg_res_str(r, row, COL_INSTANCE);
	b->reg_id = (uint32_t)pg_res_i64(r, row, COL_REG_ID);
	b->user_agent = pg_res_str(r, row, COL_USER_AGENT);
	s = pg_res_str(r, row, COL_PROTO);
	b->source.proto = sip_proto_from_name(s.p ? s.p : "", s.len);
	s = pg_res_str(r, row, COL_IP);
	if (s.len < sizeof(b->source.ip)) {
		if (s.len)
			memcpy(b->source.ip, s.p, s.len);
		b->source.ip[s.len] = '\0';
	}
	b->source.port = (uint16_t)pg_res_i32(r, row, COL_PORT, 0);
	b->source.conn_id = (uint64_t)pg_res_i64(r, row, COL_CONN_ID);
	b->registered_by = pg_res_str(r, row, COL_REGISTERED_BY);
	b->updated_at = pg_res_i64(r, row, COL_UPDATED_AT);
	if (PQnfields(r) > COL_Q_BY) {
		static const char *const names[] = {
		    [QUALIFY_OK] = "reachable",
		    [QUALIFY_LAGGED] = "lagged",
		    [QUALIFY_UNREACHABLE] = "unreachable",
		    [QUALIFY_UNMONITORED] = "unmonitored",
		};

		s = pg_res_str(r, row, COL_Q_STATUS);
		for (size_t i = QUALIFY_OK; i < sizeof(names) / sizeof(names[0]); i++) {
			if (s.len == strlen(names[i]) && memcmp(s.p, names[i], s.len) == 0)
				b->qualify = (enum qualify_status)i;
		}
		b->rtt_ms = (uint32_t)pg_res_i32(r, row, COL_Q_RTT_MS, 0);
		b->qualified_at = pg_res_i64(r, row, COL_Q_AT);
		b->qualified_by = pg_res_str(r, row, COL_Q_BY);
	}
}

/* The qualify_status column's value for s; NULL for QUALIFY_UNKNOWN (never qualified). */
const char *pg_qualify_text(enum qualify_status s)
{
	switch (s) {
	case QUALIFY_OK:
		return "reachable";
	case QUALIFY_LAGGED:
		return "lagged";
	case QUALIFY_UNREACHABLE:
		return "unreachable";
	case QUALIFY_UNMONITORED:
		return "unmonitored";
	default:
		return NULL;
	}
}

/* Room for n bindings in the backend's scratch array; NULL on ENOMEM. */
struct binding *pg_scratch_get(struct pg_be *be, size_t n)
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
int pg_res_errno(const PGresult *r, bool *conn_broken)
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

