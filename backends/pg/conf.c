/* The pg backend's section: {backend: pg, conninfo: "...", pool: N, timeout_ms: N,
 * migrate: BOOL, resolv_conf: PATH}.
 * Checked when the file is read, so `sipregd --check` reports a mistake with its line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conf.h"

int pg_configure(void **confp, const struct conf_section *sec,
		 const struct location_conf_env *env)
{
	static const char *const keys[] = {"backend", "conninfo", "pool", "timeout_ms",
					   "migrate", "resolv_conf"};
	struct pg_conf *pc;
	int err;

	(void)env;
	*confp = NULL;
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return ENOMEM;
	err = sec ? conf_keys(sec, keys, sizeof(keys) / sizeof(keys[0])) : 0;
	if (!err && sec)
		err = conf_string(sec, "conninfo", &pc->conninfo);
	if (!err && sec)
		err = conf_uint(sec, "pool", 0, 1024, &pc->pool);
	if (!err && sec)
		err = conf_uint(sec, "timeout_ms", 0, 3600000, &pc->timeout_ms);
	if (!err && sec)
		err = conf_bool(sec, "migrate", &pc->migrate);
	if (!err && sec)
		err = conf_string(sec, "resolv_conf", &pc->resolv_conf);
	if (!err && pc->resolv_conf) {
		/* c-ares quietly falls back to its defaults when the file is missing: a typo
		 * would send lookups elsewhere. Say so now, with the line. */
		FILE *f = fopen(pc->resolv_conf, "r");

		if (!f)
			err = conf_fail(sec, "resolv_conf", CONF_NO_INDEX, "cannot read %s: %s",
					pc->resolv_conf, strerror(errno));
		else
			fclose(f);
	}
	if (!err && !pc->conninfo)
		err = conf_fail(sec, NULL, CONF_NO_INDEX,
				"backend pg needs conninfo (a libpq connection string)");
	if (err) {
		pg_conf_free(pc);
		return err;
	}
	*confp = pc;
	return 0;
}

void pg_conf_free(void *conf)
{
	struct pg_conf *pc = conf;

	if (!pc)
		return;
	free(pc->conninfo);
	free(pc->resolv_conf);
	free(pc);
}

bool pg_same_store(const void *a, const void *b)
{
	const struct pg_conf *x = a, *y = b;

	return strcmp(x->conninfo, y->conninfo) == 0 && x->pool == y->pool &&
	       x->timeout_ms == y->timeout_ms && x->migrate == y->migrate &&
	       strcmp(x->resolv_conf ? x->resolv_conf : "",
		      y->resolv_conf ? y->resolv_conf : "") == 0;
}
