/* sipregctl: the operator's tool. It reaches a directory and a location service through
 * the backend interface sipregd uses (so every command is written once for every
 * backend), and a running sipregd through its control socket where the store lives in
 * that process (memory backend). This file reads the command line and dispatches. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "sipreg/location_backend.h"
#include "sipreg/log.h"

static const char ctl_usage[] =
    "usage: sipregctl [-c sipregd.yaml | -d CONNINFO] COMMAND\n"
    "\n"
    "  user add USER@DOMAIN [--password P | --ha1-md5 H --ha1-sha256 H] [--auth-off]\n"
    "                           [--max-contacts N] [--alias USER@DOMAIN]... [--disabled]\n"
    "  user del USER@DOMAIN\n"
    "  user passwd USER@DOMAIN (--password P | --ha1-md5 H --ha1-sha256 H)\n"
    "  user list [DOMAIN]\n"
    "  bindings [USER@DOMAIN]     list live bindings (all, or of one AOR)\n"
    "  unbind USER@DOMAIN [CONTACT]  remove the AOR's bindings (all, or one contact)\n"
    "  unregister USER@DOMAIN [CONTACT]  the same as unbind\n"
    "  show peers [--user U] [--domain D] [--instance I] [--json]\n"
    "                           one row per binding with its qualify status\n"
    "  show peer USER@DOMAIN [--json]  every stored field of the AOR's bindings\n"
    "  lookup USER@DOMAIN [--json]  the contacts a proxy gets, in the proxies' order\n"
    "  db migrate                 apply the schema migrations (pg; idempotent)\n"
    "  db status                  show the schema version and what the database holds (pg)\n"
    "  debug ip ADDR [on|off]     the running sipregd logs every SIP message from/to ADDR\n"
    "  debug list                 the addresses it traces\n"
    "  stats [--json]             the running sipregd's counters\n"
    "\n"
    "-c reads the directory: (user) and location: (bindings, unbind, db) sections of a\n"
    "sipregd config and works through whichever backend they name; with an in-process\n"
    "store (memory) it asks the running sipregd on its control.socket. -d CONNINFO is a\n"
    "shortcut for both sections on one PostgreSQL (default: libpq's PG* environment).\n"
    "--password - reads the password from the first line of standard input. USER is written\n"
    "as in a SIP URI (%XX escapes), the domain in any case, and a sip:/sips: URI is taken\n"
    "too; every command keys it in the canonical form the registrar uses, and the HA1s are\n"
    "computed over the unescaped user name.\n";

/* -d CONNINFO as a config: the same two sections a sipregd on that database would have,
 * read by the same code. */
static struct config *ctl_config_pg(const char *conninfo)
{
	struct config *cfg = NULL;
	char err[512], *yaml, *q;
	size_t n = 0, len = strlen(conninfo);
	int rc;

	/* YAML single quotes: '' stands for one quote. The section text appears twice. */
	q = malloc(2 * len + 1);
	yaml = q ? malloc(4 * len + 256) : NULL;
	if (!yaml)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	for (size_t i = 0; i < len; i++) {
		if (conninfo[i] == '\'')
			q[n++] = '\'';
		q[n++] = conninfo[i];
	}
	q[n] = '\0';
	snprintf(yaml, 4 * len + 256,
		 "directory: {backend: pg, conninfo: '%s', pool: 1}\n"
		 "location: {backend: pg, conninfo: '%s', pool: 1}\n",
		 q, q);
	rc = config_load_string(&cfg, yaml, strlen(yaml), "-d", err, sizeof(err));
	free(q);
	free(yaml);
	if (rc)
		ctl_die(CTL_EXIT_USAGE, "%s", err);
	return cfg;
}

int main(int argc, char **argv)
{
	const char *conninfo = NULL, *cfgpath = NULL;
	struct ctl c = {0};
	char err[512];
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(ctl_usage, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("sipregctl %s\n", SIPREG_VERSION);
			return 0;
		}
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			if (argv[i][1] == 'd')
				conninfo = argv[++i];
			else
				cfgpath = argv[++i];
			continue;
		}
		ctl_die(CTL_EXIT_USAGE, "unknown option '%s'\n%s", argv[i], ctl_usage);
	}
	if (i >= argc) {
		fputs(ctl_usage, stderr);
		return CTL_EXIT_USAGE;
	}
	if (conninfo && cfgpath)
		ctl_die(CTL_EXIT_USAGE, "give -d or -c, not both");
	if (strcmp(argv[i], "db") != 0 && strcmp(argv[i], "user") != 0 &&
	    strcmp(argv[i], "bindings") != 0 && strcmp(argv[i], "unbind") != 0 &&
	    strcmp(argv[i], "unregister") != 0 && strcmp(argv[i], "show") != 0 &&
	    strcmp(argv[i], "lookup") != 0 && strcmp(argv[i], "debug") != 0 &&
	    strcmp(argv[i], "stats") != 0)
		ctl_die(CTL_EXIT_USAGE, "unknown command '%s'\n%s", argv[i], ctl_usage);
	/* The backends log through the daemon's logger: keep their chatter to warnings. */
	log_set_level(LOG_WARN);
	if (cfgpath) {
		if (config_load(&c.cfg, cfgpath, err, sizeof(err)))
			ctl_die(CTL_EXIT_USAGE, "%s", err);
		c.cfg_path = cfgpath;
	} else {
#ifndef HAVE_PG
		ctl_die(CTL_EXIT_USAGE, "built without the pg backend: give -c sipregd.yaml");
#endif
		/* Without -d, libpq's PG* environment says where: name only ourselves. */
		c.cfg = ctl_config_pg(conninfo && *conninfo ? conninfo
						     : "application_name=sipregctl");
	}
	c.base = event_base_new();
	if (!c.base)
		ctl_die(CTL_EXIT_FAIL, "cannot create the event loop");
	if (strcmp(argv[i], "db") == 0)
#ifdef HAVE_PG
		rc = ctl_db(&c, argc - i - 1, argv + i + 1);
#else
		ctl_die(CTL_EXIT_FAIL, "db: built without the pg backend");
#endif
	else if (strcmp(argv[i], "user") == 0)
		rc = ctl_user(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "bindings") == 0)
		rc = ctl_bindings(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "show") == 0)
		rc = ctl_show(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "lookup") == 0)
		rc = ctl_lookup(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "debug") == 0)
		rc = ctl_debug(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "stats") == 0)
		rc = ctl_stats(&c, argc - i - 1, argv + i + 1);
	else
		rc = ctl_unbind(&c, argc - i - 1, argv + i + 1);
	if (c.dir == c.loc)
		c.dir = NULL;
	location_close(&c.loc);
	location_close(&c.dir);
	config_free(&c.cfg);
	event_base_free(c.base);
	return rc;
}
