/* sipregctl db migrate|status: the PostgreSQL schema, the one thing of a backend's own
 * that is not an operation of the location interface. Synchronous libpq through the pg
 * backend's migration runner: sipregctl runs beside the daemons, never in their loop. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "pg_conf.h"
#include "pg_schema.h"
#include "sipreg/location_backend.h"

/* libpq's message without its trailing newline. */
static const char *pqmsg(const char *msg)
{
	static char buf[1024];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", msg ? msg : "");
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return buf;
}

static PGconn *db_connect(struct ctl *c)
{
	const struct pg_conf *pc = location_conf_of(c->cfg->location, &location_backend_pg);
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"sipregctl", NULL, NULL};
	PGconn *conn;

	if (!pc)
		ctl_die(CTL_EXIT_FAIL, "%s: the location backend is '%s', not pg: it has no schema",
			c->cfg_path ? c->cfg_path : "-d",
			location_conf_backend(c->cfg->location));
	vals[1] = pc->conninfo;
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	if (PQstatus(conn) != CONNECTION_OK)
		ctl_die(CTL_EXIT_FAIL, "cannot connect to the database: %s",
			pqmsg(PQerrorMessage(conn)));
	PQclear(PQexec(conn, "SET client_min_messages = warning"));
	return conn;
}

static int db_status(PGconn *conn)
{
	char err[1024];
	PGresult *r;
	int from = 0;

	if (pg_schema_version(conn, &from, err, sizeof(err)))
		ctl_die(CTL_EXIT_FAIL, "db status: %s", err);
	printf("schema version %d of %zu%s\n", from, pg_migrations_count,
	       from < (int)pg_migrations_count ? " (run `sipregctl db migrate`)" : "");
	if (from == 0)
		return 0;
	r = PQexec(conn, "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM users), "
			 "(SELECT count(*) FROM bindings WHERE expires > now()), "
			 "(SELECT count(*) FROM bindings WHERE expires <= now())");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ctl_die(CTL_EXIT_FAIL, "db status: %s", pqmsg(PQresultErrorMessage(r)));
	printf("domains %s\nusers %s\nlive bindings %s\nexpired bindings not yet swept %s\n",
	       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
	       PQgetvalue(r, 0, 3));
	PQclear(r);
	return 0;
}

int ctl_db(struct ctl *c, int argc, char **argv)
{
	char err[1024];
	int from = 0, to = 0, rc;
	PGconn *conn;

	if (argc != 1 || (strcmp(argv[0], "migrate") != 0 && strcmp(argv[0], "status") != 0))
		ctl_die(CTL_EXIT_USAGE, "db: want migrate or status");
	conn = db_connect(c);
	if (strcmp(argv[0], "status") == 0) {
		rc = db_status(conn);
		PQfinish(conn);
		return rc;
	}
	rc = pg_schema_migrate(conn, &from, &to, err, sizeof(err));
	PQfinish(conn);
	if (rc)
		ctl_die(CTL_EXIT_FAIL, "db migrate: %s", err);
	if (from == to)
		printf("schema is up to date (version %d)\n", to);
	else
		printf("schema migrated from version %d to %d\n", from, to);
	return 0;
}
