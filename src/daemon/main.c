/* sipregd: command line, configuration, signals, and the event loop that runs the
 * registrar until SIGTERM/SIGINT. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		"Runs in the foreground and logs to stderr; stop with SIGTERM or SIGINT.\n"
		"Location backends compiled in:");
	for (; *names; names++)
		fprintf(out, " %s", *names);
	fputc('\n', out);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	(void)what;
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(base, NULL);
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
	struct event *sigterm = NULL, *sigint = NULL;
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
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
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
	server_free(&srv);
	if (base)
		event_base_free(base);
	config_free(&cfg);
	return rc;
}
