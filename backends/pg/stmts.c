/* The SQL the backend runs: one prepared statement per operation, prepared on every
 * connection as it comes up (conn.c), with the parameter types it sends in binary. */
#include "internal.h"

const struct binding_set pg_empty_set = {.v = NULL, .n = 0};

const struct pg_stmt_def pg_stmts[STMT_N] = {
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
		    "SELECT NULL::integer, " PG_BINDING_COLS ", b.aor, b.id, " PG_QUALIFY_COLS
		    " FROM bindings b WHERE b.aor = $1 AND b.expires > to_timestamp($2) "
		    "ORDER BY coalesce(b.q, 1000) DESC, b.updated_at DESC, b.id",
		    2,
		    {OID_BYTEA, OID_INT8}},
    [STMT_SWEEP] = {"sipreg_sweep", "SELECT sipreg_sweep($1, $2)", 2, {OID_INT8, OID_INT4}},
    [STMT_ITERATE] = {"sipreg_iterate",
		      "SELECT NULL::integer, " PG_BINDING_COLS ", b.aor, b.id, " PG_QUALIFY_COLS
		      " FROM bindings b "
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
    /* Qualify state of one live binding (migration 003). $7 = 0 stores it; else it is a
     * claim, won only while this instance ($6) stored the last state (and no refresh
     * cleared it since) or the last state (the registration when never qualified) is
     * older than $7: the row lock makes one of two concurrent claimants see the other's
     * fresh qualified_at and lose. */
    [STMT_QUALIFY_SET] = {"sipreg_qualify_set",
			  "UPDATE bindings SET qualify_status = $3, qualify_rtt_us = $4 * 1000, "
			  "qualified_at = to_timestamp($5), qualified_by = $6 "
			  "WHERE aor = $1 AND contact_key = $2 AND expires > now() AND "
			  "($7 = 0 OR (qualified_by = $6 AND qualified_at IS NOT NULL) OR "
			  "coalesce(qualified_at, updated_at) < to_timestamp($7)) RETURNING id",
			  7,
			  {OID_BYTEA, OID_BYTEA, OID_TEXT, OID_INT4, OID_INT8, OID_BYTEA,
			   OID_INT8}},
};
