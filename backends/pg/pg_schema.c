/* Synchronous schema migrations (sql/migrations/, embedded at build time): run by
 * `sipregctl db migrate`, and by sipregd at start-up before its loop runs when the config
 * says `migrate: true` (pg.c, pg_open), never on the event loop. */
#include "pg_schema.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void schema_err(char *err, size_t errlen, const char *what, PGconn *conn,
		       const PGresult *res)
{
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
	size_t n;

	snprintf(err, errlen, "%s: %s", what, msg && *msg ? msg : "unknown error");
	n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
}

/* Run one command; 0 or EIO (connection gone) / EPROTO (the server refused it). */
static int schema_exec(PGconn *conn, const char *sql, const char *what, char *err,
		       size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		schema_err(err, errlen, what, conn, res);
		rc = PQstatus(conn) == CONNECTION_OK ? EPROTO : EIO;
	}
	PQclear(res);
	return rc;
}

static int schema_current(PGconn *conn, int *version_r, char *err, size_t errlen)
{
	PGresult *res =
	    PQexec(conn, "SELECT coalesce(max(version), 0) FROM sipreg_schema_version");
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		schema_err(err, errlen, "reading sipreg_schema_version", conn, res);
		rc = PQstatus(conn) == CONNECTION_OK ? EPROTO : EIO;
		goto out;
	}
	*version_r = atoi(PQgetvalue(res, 0, 0));
out:
	PQclear(res);
	return rc;
}

int pg_schema_version(PGconn *conn, int *version_r, char *err, size_t errlen)
{
	PGresult *res;
	bool exists;

	res = PQexec(conn, "SELECT to_regclass('sipreg_schema_version') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		schema_err(err, errlen, "looking for sipreg_schema_version", conn, res);
		PQclear(res);
		return EIO;
	}
	exists = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	*version_r = 0;
	if (!exists)
		return 0;
	return schema_current(conn, version_r, err, errlen) ? EIO : 0;
}

static int schema_apply_one(PGconn *conn, const struct pg_migration *m, char *err,
			    size_t errlen)
{
	char what[128], version[16];
	const char *params[2] = {version, m->name};
	PGresult *res;
	int rc;

	snprintf(what, sizeof(what), "migration %03d_%s", m->version, m->name);
	snprintf(version, sizeof(version), "%d", m->version);
	rc = schema_exec(conn, "BEGIN", what, err, errlen);
	if (rc)
		return rc;
	rc = schema_exec(conn, m->sql, what, err, errlen);
	if (rc)
		goto out;
	res = PQexecParams(conn,
			   "INSERT INTO sipreg_schema_version (version, name) VALUES ($1, $2)",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		schema_err(err, errlen, what, conn, res);
		rc = PQstatus(conn) == CONNECTION_OK ? EPROTO : EIO;
	}
	PQclear(res);
	if (rc)
		goto out;
	rc = schema_exec(conn, "COMMIT", what, err, errlen);
out:
	if (rc && PQstatus(conn) == CONNECTION_OK) {
		char ignored[8];
		schema_exec(conn, "ROLLBACK", "rollback", ignored, sizeof(ignored));
	}
	return rc;
}

int pg_schema_migrate(PGconn *conn, int *from_r, int *to_r, char *err, size_t errlen)
{
	char sql[128];
	int rc, cur = 0, latest = (int)pg_migrations_count;
	bool locked = false;

	rc = schema_exec(conn, "SET client_min_messages = warning", "session setup", err,
			 errlen);
	if (rc)
		goto out;
	/* Session-level lock: a second migrator waits here and then finds the work done. */
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%lld)", PG_SCHEMA_LOCK_KEY);
	rc = schema_exec(conn, sql, "taking the migration lock", err, errlen);
	if (rc)
		goto out;
	locked = true;
	rc = schema_exec(conn,
			 "CREATE TABLE IF NOT EXISTS sipreg_schema_version ("
			 " version integer PRIMARY KEY,"
			 " name text NOT NULL,"
			 " applied_at timestamptz NOT NULL DEFAULT now())",
			 "creating sipreg_schema_version", err, errlen);
	if (rc)
		goto out;
	rc = schema_current(conn, &cur, err, errlen);
	if (rc)
		goto out;
	if (from_r)
		*from_r = cur;
	if (cur > latest) {
		snprintf(err, errlen,
			 "database schema is at version %d, newer than this build knows (%d)",
			 cur, latest);
		rc = EPROTO;
		goto out;
	}
	for (size_t i = (size_t)cur; i < pg_migrations_count; i++) {
		rc = schema_apply_one(conn, &pg_migrations[i], err, errlen);
		if (rc)
			goto out;
		cur = pg_migrations[i].version;
	}
out:
	if (to_r)
		*to_r = cur;
	if (locked && PQstatus(conn) == CONNECTION_OK) {
		char ignored[8];
		snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%lld)",
			 PG_SCHEMA_LOCK_KEY);
		schema_exec(conn, sql, "unlock", ignored, sizeof(ignored));
	}
	return rc;
}
