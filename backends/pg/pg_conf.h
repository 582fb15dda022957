/* Inside the pg backend: its section of the config file (conf.c), read by pg.c at open.
 * sipregctl (src/ctl/) includes it too, to reach the database a config names. */
#ifndef SIPREG_BACKEND_PG_CONF_H
#define SIPREG_BACKEND_PG_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "sipreg/location_backend.h"

struct pg_conf {
	char *conninfo;	     /* libpq connection string or URI (required) */
	uint32_t pool;	     /* connections, 0 = PG_DEFAULT_POOL */
	uint32_t timeout_ms; /* every connect and query, 0 = PG_DEFAULT_TIMEOUT_MS */
	bool migrate;	     /* apply the schema migrations at open (start-up) */
	char *resolv_conf;   /* resolver configuration for host names, NULL = /etc/resolv.conf */
};

int pg_configure(void **confp, const struct conf_section *sec,
		 const struct location_conf_env *env);
void pg_conf_free(void *conf);
/* Same conninfo, pool, timeout, migrate and resolver: one instance (one pool) serves both sections. */
bool pg_same_store(const void *a, const void *b);

/* The backend's one export (pg.c), named here for the tools that ask location_conf_of(). */
extern const struct location_backend location_backend_pg;

#endif
