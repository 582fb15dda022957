/* sipregd: command line, configuration, signals (SIGHUP reloads, SIGTERM/SIGINT drain
 * and stop), dropping root, and the event loop that runs the registrar. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "sipreg/log.h"
#include "daemon/server.h"
#include "sipreg/location.h"

/* sysexits.h values: distinct exit codes let init systems tell bad config from a crash. */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78
#define EXIT_SOFTWARE 70
/* A listener could not be bound (port taken, address not local, no permission): the
 * config may be fine and the host is not, so it is not EXIT_CONFIG. */
#define EXIT_OSERR 71

static void usage(FILE *out)
{
	const char *const *names = location_backend_names();

	fprintf(out,
		"usage: sipregd -c FILE [--check]\n"
		"       sipregd --version | --help\n"
		"\n"
		"SIP registrar (RFC 3261 §10) serving a location service shared by a cluster.\n"
		"\n"
		"  -c, --config FILE   YAML configuration (see docs/configuration.md)\n"
		"      --check         validate the configuration and exit (0 = valid)\n"
		"  -v, --version       print the version and exit\n"
		"  -h, --help          this text\n"
		"\n"
		"Runs in the foreground and logs to stderr (or syslog: log.target). SIGHUP\n"
		"reloads the log level, debug.ip and the memory directory's users; SIGTERM or\n"
		"SIGINT stops reading, answers what is in flight (at most 10 s), then exits; a\n"
		"second one exits at once.\n"
		"Location backends compiled in:");
	for (; *names; names++)
		fprintf(out, " %s", *names);
	fputc('\n', out);
}

struct daemon {
	struct event_base *base;
	struct server *srv;
	const char *path;
	bool stopping;
};

static void on_drained(void *arg)
{
	struct daemon *d = arg;

	event_base_loopexit(d->base, NULL);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (d->stopping) {
		log_info("signal %d again: stopping now", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stopping = true;
	log_info("signal %d: draining, then shutting down", (int)sig);
	if (server_drain(d->srv, on_drained, d) != 0)
		event_base_loopexit(d->base, NULL);
}

/* SIGHUP: the file is read again; what cannot change without a restart (listeners,
 * backends, limits) keeps its old value, and a file that no longer loads changes
 * nothing. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct config *fresh = NULL;
	char err[512];

	(void)sig;
	(void)what;
	log_reopen();
	if (config_load(&fresh, d->path, err, sizeof(err)) != 0) {
		log_err("SIGHUP: %s: nothing reloaded", err);
		return;
	}
	log_set_level((enum log_level)fresh->log_level);
	server_reload(d->srv, fresh);
	log_info("SIGHUP: %s reloaded (log level, debug.ip, users)", d->path);
	config_free(&fresh);
}

/* user:/group:: leave root once every socket is bound. The group goes first: without
 * root it could no longer be changed. */
static int drop_privileges(const struct config *cfg)
{
	struct passwd *pw = NULL;
	struct group *gr = NULL;
	gid_t gid;

	if (!cfg->run_user && !cfg->run_group)
		return 0;
	if (cfg->run_user && !(pw = getpwnam(cfg->run_user))) {
		log_err("user: no such user \"%s\"", cfg->run_user);
		return ENOENT;
	}
	if (cfg->run_group && !(gr = getgrnam(cfg->run_group))) {
		log_err("group: no such group \"%s\"", cfg->run_group);
		return ENOENT;
	}
	gid = gr ? gr->gr_gid : pw->pw_gid;
	if (setgroups(1, &gid) != 0 || setgid(gid) != 0) {
		log_err("group: cannot switch to gid %u: %s", (unsigned)gid, strerror(errno));
		return errno;
	}
	if (pw && setuid(pw->pw_uid) != 0) {
		log_err("user: cannot switch to \"%s\": %s", cfg->run_user, strerror(errno));
		return errno;
	}
	/* Proof, not hope: a process that could return to root has not dropped it. */
	if (pw && pw->pw_uid != 0 && setuid(0) == 0) {
		log_err("user: still able to become root after switching to \"%s\"",
			cfg->run_user);
		return EPERM;
	}
	log_info("running as uid %u gid %u", (unsigned)getuid(), (unsigned)getgid());
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	struct daemon d = {0};
	struct event_base *base = NULL;
	struct server *srv = NULL;
	struct config *cfg = NULL;
	enum server_stage stage;
	const char *path = NULL;
	bool check_only = false;
	int rc = EXIT_SOFTWARE;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'v':
			printf("sipregd %s\n", SIPREG_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}

	if (config_load(&cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	if (check_only) {
		printf("%s: configuration OK\n", path);
		rc = 0;
		goto out;
	}
	log_set_level((enum log_level)cfg->log_level);
	log_set_target((enum log_target)cfg->log_target);
	signal(SIGPIPE, SIG_IGN);

	base = event_base_new();
	if (!base) {
		log_err("cannot create the event loop");
		goto out;
	}
	if (server_alloc(&srv, base, cfg, &stage) != 0) {
		rc = stage == SERVER_STAGE_LISTEN ? EXIT_OSERR : EXIT_CONFIG;
		log_err("startup failed (exit status %d)", rc);
		goto out;
	}
	if (drop_privileges(cfg) != 0) {
		rc = EXIT_CONFIG;
		goto out;
	}
	d = (struct daemon){.base = base, .srv = srv, .path = path};
	sigterm = evsignal_new(base, SIGTERM, on_stop, &d);
	sigint = evsignal_new(base, SIGINT, on_stop, &d);
	sighup = evsignal_new(base, SIGHUP, on_reload, &d);
	if (!sigterm || !sigint || !sighup || evsignal_add(sigterm, NULL) ||
	    evsignal_add(sigint, NULL) || evsignal_add(sighup, NULL)) {
		log_err("cannot install signal handlers");
		goto out;
	}
	log_info("sipregd %s started: instance %s, directory %s, location %s", SIPREG_VERSION,
		 cfg->instance_id, location_conf_backend(cfg->directory),
		 location_conf_backend(cfg->location));
	if (event_base_dispatch(base) < 0) {
		log_err("event loop failed");
		goto out;
	}
	log_info("stopped");
	rc = 0;
out:
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	server_free(&srv);
	if (base)
		event_base_free(base);
	config_free(&cfg);
	return rc;
}
