/* The database schema sipreg expects: the migrations embedded at build time from
 * sql/migrations/, and the synchronous migration runner shared by sipregctl and sipregd's
 * start-up with `migrate: true` (before its event loop runs). */
#ifndef SIPREG_PG_SCHEMA_H
#define SIPREG_PG_SCHEMA_H

#include <stddef.h>

#include <libpq-fe.h>

struct pg_migration {
	int version;	  /* NNN of sql/migrations/NNN_name.sql */
	const char *name; /* name */
	const char *sql;
};

/* Generated into pg_migrations.c, ordered by version, numbered 1..count. */
extern const struct pg_migration pg_migrations[];
extern const size_t pg_migrations_count;

/* The advisory-lock key that serialises migration runs across processes. */
#define PG_SCHEMA_LOCK_KEY 8315178070380003331LL

/* Bring the database to the latest embedded version. Safe when several processes run it at
 * once (they serialise on an advisory lock; the later ones find nothing to do). Each
 * migration commits in its own transaction together with its sipreg_schema_version row.
 * *from_r and *to_r (may be NULL) receive the versions before and after. Returns 0,
 * EPROTO when the database is newer than this build or a migration failed, EIO when the
 * connection failed; err gets a one-line reason. */
int pg_schema_migrate(PGconn *conn, int *from_r, int *to_r, char *err, size_t errlen);

/* The schema version applied to the database (0 when none). Returns 0 or EIO. */
int pg_schema_version(PGconn *conn, int *version_r, char *err, size_t errlen);

#endif
