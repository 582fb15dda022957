/* Unit tests for src/config/config.c: the YAML config lands in the right fields, defaults apply,
 * and each mistake is refused with EINVAL and a message naming its line and key. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registrar/auth.h"
#include "memory.h"
#ifdef HAVE_PG
#include "pg_conf.h"
#endif
#include "check.h"
#include "config/config.h"
#include "sipreg/log.h"
#include "util/netaddr.h"

static char errbuf[512];

/* The backends' own parse of their sections, through the registry. */
static const struct mem_conf *mem_of(const struct location_conf *lc)
{
	return location_conf_of(lc, &location_backend_memory);
}

static size_t n_users(const struct config *cfg)
{
	const struct mem_conf *mc = mem_of(cfg->directory);

	return mc ? mc->n_users : 0;
}

static const struct mem_conf_user *user_at(const struct config *cfg, size_t i)
{
	return i < n_users(cfg) ? &mem_of(cfg->directory)->users[i] : NULL;
}

static int load(struct config **cfgp, const char *yaml)
{
	return config_load_string(cfgp, yaml, strlen(yaml), "t.yaml", errbuf, sizeof(errbuf));
}

/* The YAML must be refused with EINVAL and a message "t.yaml:LINE: KEY: ..." that also
 * contains want (when given). */
static void check_refused(const char *yaml, unsigned line, const char *key, const char *want,
			  int src_line)
{
	struct config *cfg = NULL;
	char prefix[160];
	int rc = load(&cfg, yaml);

	snprintf(prefix, sizeof(prefix), "t.yaml:%u: %s%s", line, key, *key ? ": " : "");
	if (rc != EINVAL || cfg != NULL) {
		printf("#   line %d: rc %d, expected EINVAL\n", src_line, rc);
		check_case_failed = 1;
	}
	if (strncmp(errbuf, prefix, strlen(prefix)) != 0 || (want && !strstr(errbuf, want))) {
		printf("#   line %d: message \"%s\", expected \"%s...%s\"\n", src_line, errbuf,
		       prefix, want ? want : "");
		check_case_failed = 1;
	}
	if (strchr(errbuf, '\n')) {
		printf("#   line %d: message is not one line\n", src_line);
		check_case_failed = 1;
	}
	config_free(&cfg);
}

#define REFUSED(yaml, line, key, want) check_refused(yaml, line, key, want, __LINE__)

static const char full_example[] =
    "instance_id: sipreg-a\n"
    "listen: [udp://127.0.0.1:5060, tcp://127.0.0.1:5061, \"udp://[::1]:5062\"]\n"
    "domains: [Example.COM, dev.example.com]\n"
    "registrar:\n"
    "  default_expires: 1800\n"
    "  min_expires: 30\n"
    "  max_expires: 7000\n"
    "  max_contacts: 7\n"
    "  max_contacts_status: 503\n"
    "  unknown_domain: 403\n"
    "  unknown_user: 403\n"
    "directory: {backend: memory}\n"
    "location: {backend: pg, conninfo: \"host=127.0.0.1 dbname=sipreg\", pool: 4, "
    "timeout_ms: 2000}\n"
    "users:\n"
    "  - {user: alice, password: secret}\n"
    "  - {user: bob, domain: example.com, ha1_md5: \"0123456789ABCDEF0123456789abcdef\",\n"
    "     ha1_sha256: "
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\n"
    "     auth: off, max_contacts: 3, aliases: [\"bobby@EXAMPLE.com\"], enabled: false}\n"
    "auth:\n"
    "  enabled: true\n"
    "  secret_file: /etc/sipreg/nonce.secret\n"
    "  nonce_ttl: 120\n"
    "  off_domains: [dev.example.com]\n"
    "  ban: {max_failures: 5, window: 30, ban_time: 600, action: drop}\n"
    "  algorithms: [MD5, sha-256]\n"
    "  user_agents:\n"
    "    - {match: \"Acme Phone/2\", algorithms: [SHA-256, MD5]}\n"
    "    - {match: legacy, algorithms: [md5]}\n"
    "limits: {max_message_size: 4096, max_tcp_connections: 100, tcp_idle_timeout: 60,\n"
    "         max_transactions: 5000, max_pending: 50, max_queue_delay_ms: 0,\n"
    "         max_backend_delay_ms: 300}\n"
    "log: {level: debug}\n"
    "trusted_sources: [\"10.0.0.0/8\", 192.0.2.7, \"2001:db8::/32\"]\n";

static void test_full_example_sets_every_field(void)
{
	struct config *cfg = NULL;
	const struct mem_conf_user *u;

	CHECK_INT(load(&cfg, full_example), 0);
	if (!cfg) {
		printf("#   %s\n", errbuf);
		check_case_failed = 1;
		return;
	}
	CHECK_STR(cfg->instance_id, "sipreg-a");
	CHECK_INT(cfg->n_listen, 3);
	CHECK_INT(cfg->listen[0].proto, SIP_PROTO_UDP);
	CHECK_STR(cfg->listen[0].addr, "127.0.0.1");
	CHECK_INT(cfg->listen[0].port, 5060);
	CHECK_INT(cfg->listen[1].proto, SIP_PROTO_TCP);
	CHECK_INT(cfg->listen[1].port, 5061);
	CHECK_INT(cfg->listen[2].proto, SIP_PROTO_UDP);
	CHECK_STR(cfg->listen[2].addr, "::1");
	CHECK_INT(cfg->listen[2].port, 5062);
	CHECK_INT(cfg->registrar.n_domains, 2);
	CHECK_STR(cfg->registrar.domains[0], "example.com");
	CHECK_STR(cfg->registrar.domains[1], "dev.example.com");
	CHECK_INT(cfg->registrar.default_expires, 1800);
	CHECK_INT(cfg->registrar.min_expires, 30);
	CHECK_INT(cfg->registrar.max_expires, 7000);
	CHECK_INT(cfg->registrar.max_contacts, 7);
	CHECK_INT(cfg->registrar.max_contacts_status, 503);
	CHECK_INT(cfg->registrar.unknown_domain_status, 403);
	CHECK_INT(cfg->registrar.unknown_user_status, 403);
	CHECK_STR(location_conf_backend(cfg->directory), "memory");
	CHECK_STR(location_conf_backend(cfg->location), "pg");
#ifdef HAVE_PG
	{
		const struct pg_conf *pc = location_conf_of(cfg->location, &location_backend_pg);

		CHECK(pc != NULL);
		if (pc) {
			CHECK_STR(pc->conninfo, "host=127.0.0.1 dbname=sipreg");
			CHECK_INT(pc->pool, 4);
			CHECK_INT(pc->timeout_ms, 2000);
		}
	}
#endif
	CHECK_INT(n_users(cfg), 2);
	u = user_at(cfg, 0);
	if (!u)
		return;
	CHECK_STR(u->user, "alice");
	CHECK(u->domain == NULL);
	CHECK_STR(u->password, "secret");
	CHECK(u->ha1_md5 == NULL && u->ha1_sha256 == NULL);
	CHECK(u->enabled && !u->auth_off);
	CHECK_INT(u->max_contacts, 0);
	CHECK_INT(u->n_aliases, 0);
	u = user_at(cfg, 1);
	if (!u)
		return;
	CHECK_STR(u->user, "bob");
	CHECK_STR(u->domain, "example.com");
	CHECK(u->password == NULL);
	CHECK_STR(u->ha1_md5, "0123456789abcdef0123456789abcdef");
	CHECK_STR(u->ha1_sha256,
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	CHECK(u->auth_off);
	CHECK(!u->enabled);
	CHECK_INT(u->max_contacts, 3);
	CHECK_INT(u->n_aliases, 1);
	if (u->n_aliases == 1)
		CHECK_STR(u->aliases[0], "bobby@example.com");
	CHECK(cfg->auth.enabled);
	CHECK_STR(cfg->auth.secret_file, "/etc/sipreg/nonce.secret");
	CHECK_INT(cfg->auth.nonce_ttl, 120);
	CHECK_INT(cfg->auth.n_off_domains, 1);
	if (cfg->auth.n_off_domains == 1)
		CHECK_STR(cfg->auth.off_domains[0], "dev.example.com");
	CHECK_INT(cfg->auth.ban.max_failures, 5);
	CHECK_INT(cfg->auth.ban.window, 30);
	CHECK_INT(cfg->auth.ban.ban_time, 600);
	CHECK_INT(cfg->auth.ban.action, BAN_DROP);
	CHECK_INT(cfg->auth.n_algorithms, 2);
	CHECK_INT(cfg->auth.algorithms[0], DIGEST_MD5);
	CHECK_INT(cfg->auth.algorithms[1], DIGEST_SHA256);
	CHECK_INT(cfg->auth.n_user_agents, 2);
	if (cfg->auth.n_user_agents == 2) {
		CHECK_STR(cfg->auth.user_agents[0].match, "Acme Phone/2");
		CHECK_INT(cfg->auth.user_agents[0].n_algorithms, 2);
		CHECK_INT(cfg->auth.user_agents[0].algorithms[0], DIGEST_SHA256);
		CHECK_INT(cfg->auth.user_agents[0].algorithms[1], DIGEST_MD5);
		CHECK_STR(cfg->auth.user_agents[1].match, "legacy");
		CHECK_INT(cfg->auth.user_agents[1].n_algorithms, 1);
		CHECK_INT(cfg->auth.user_agents[1].algorithms[0], DIGEST_MD5);
	}
	CHECK_INT(cfg->limits.max_message_size, 4096);
	CHECK_INT(cfg->limits.max_tcp_connections, 100);
	CHECK_INT(cfg->limits.tcp_idle_timeout, 60);
	CHECK_INT(cfg->limits.max_transactions, 5000);
	CHECK_INT(cfg->limits.max_pending, 50);
	CHECK_INT(cfg->limits.max_queue_delay_ms, 0);
	CHECK_INT(cfg->limits.max_backend_delay_ms, 300);
	CHECK_INT(cfg->log_level, LOG_DEBUG);
	CHECK_INT(netaddr_set_count(cfg->trusted_sources), 3);
	CHECK(netaddr_set_contains_str(cfg->trusted_sources, "10.9.8.7"));
	CHECK(netaddr_set_contains_str(cfg->trusted_sources, "192.0.2.7"));
	CHECK(netaddr_set_contains_str(cfg->trusted_sources, "2001:db8::1"));
	CHECK(!netaddr_set_contains_str(cfg->trusted_sources, "192.0.2.8"));
	CHECK(cfg->path == NULL);
	config_free(&cfg);
	CHECK(cfg == NULL);
}

static void check_defaults(const struct config *cfg)
{
	char want[300], host[256];

	CHECK_INT(cfg->n_listen, 2);
	if (cfg->n_listen == 2) {
		CHECK_INT(cfg->listen[0].proto, SIP_PROTO_UDP);
		CHECK_STR(cfg->listen[0].addr, "127.0.0.1");
		CHECK_INT(cfg->listen[0].port, 5060);
		CHECK_INT(cfg->listen[1].proto, SIP_PROTO_TCP);
		CHECK_STR(cfg->listen[1].addr, "127.0.0.1");
		CHECK_INT(cfg->listen[1].port, 5060);
	}
	CHECK_INT(cfg->registrar.n_domains, 0);
	CHECK_INT(cfg->registrar.default_expires, 3600);
	CHECK_INT(cfg->registrar.min_expires, 60);
	CHECK_INT(cfg->registrar.max_expires, 7200);
	CHECK_INT(cfg->registrar.max_contacts, 10);
	CHECK_INT(cfg->registrar.max_contacts_status, 403);
	CHECK_INT(cfg->registrar.unknown_domain_status, 404);
	CHECK_INT(cfg->registrar.unknown_user_status, 404);
	CHECK_STR(location_conf_backend(cfg->directory), "memory");
	CHECK_STR(location_conf_backend(cfg->location), "memory");
	CHECK_INT(n_users(cfg), 0);
	CHECK(cfg->auth.enabled);
	CHECK(cfg->auth.secret_file == NULL);
	CHECK_INT(cfg->auth.nonce_ttl, 300);
	CHECK_INT(cfg->auth.n_off_domains, 0);
	CHECK_INT(cfg->auth.ban.max_failures, 10);
	CHECK_INT(cfg->auth.ban.window, 60);
	CHECK_INT(cfg->auth.ban.ban_time, 300);
	CHECK_INT(cfg->auth.ban.action, BAN_REPLY_403);
	/* MD5 for every client, except the ones a test verified to answer SHA-256. */
	CHECK_INT(cfg->auth.n_algorithms, 0);
	CHECK_INT(cfg->auth.n_user_agents, 1);
	if (cfg->auth.n_user_agents == 1) {
		CHECK_STR(cfg->auth.user_agents[0].match, "Linphonec/5.");
		CHECK_INT(cfg->auth.user_agents[0].n_algorithms, 2);
		CHECK_INT(cfg->auth.user_agents[0].algorithms[0], DIGEST_SHA256);
		CHECK_INT(cfg->auth.user_agents[0].algorithms[1], DIGEST_MD5);
	}
	CHECK_INT(cfg->limits.max_message_size, 65535);
	CHECK_INT(cfg->limits.max_tcp_connections, 10000);
	CHECK_INT(cfg->limits.tcp_idle_timeout, 600);
	CHECK_INT(cfg->limits.max_transactions, 2000000);
	CHECK_INT(cfg->limits.max_pending, 10000);
	CHECK_INT(cfg->limits.max_queue_delay_ms, 250);
	CHECK_INT(cfg->limits.max_backend_delay_ms, 1000);
	CHECK_INT(cfg->limits.max_tcp_connections_per_source, 256);
	CHECK_INT(cfg->limits.tcp_output_budget, 64 * 1024 * 1024);
	CHECK_INT(cfg->limits.tcp_max_output, 256 * 1024);
	CHECK_INT(cfg->limits.tcp_output_timeout, 30);
	CHECK_INT(cfg->log_level, LOG_INFO);
	CHECK(cfg->trusted_sources == NULL);
	CHECK(gethostname(host, sizeof(host)) == 0);
	host[sizeof(host) - 1] = '\0';
	snprintf(want, sizeof(want), "%s:%ld", host, (long)getpid());
	CHECK_STR(cfg->instance_id, want);
}

static void test_empty_config_gets_every_default(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, ""), 0);
	if (cfg)
		check_defaults(cfg);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "# only a comment\n"), 0);
	if (cfg)
		check_defaults(cfg);
	config_free(&cfg);
}

static void test_partial_sections_keep_other_defaults(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "registrar: {max_contacts: 2}\nauth: {nonce_ttl: 60}\n"
			     "location: {backend: pg, conninfo: \"dbname=x\"}\n"),
		  0);
	if (!cfg)
		return;
	CHECK_INT(cfg->registrar.max_contacts, 2);
	CHECK_INT(cfg->registrar.default_expires, 3600);
	CHECK_INT(cfg->registrar.max_contacts_status, 403);
	CHECK(cfg->auth.enabled);
	CHECK_INT(cfg->auth.nonce_ttl, 60);
	CHECK_INT(cfg->auth.ban.max_failures, 10);
	CHECK_STR(location_conf_backend(cfg->location), "pg");
#ifdef HAVE_PG
	CHECK(location_conf_of(cfg->location, &location_backend_pg) != NULL &&
	      strcmp(((const struct pg_conf *)location_conf_of(cfg->location,
							      &location_backend_pg))->conninfo,
		     "dbname=x") == 0);
#endif
	CHECK_STR(location_conf_backend(cfg->directory), "memory");
	config_free(&cfg);
}

static void test_qualify_section_turns_qualify_on_with_defaults(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, ""), 0);
	if (cfg)
		CHECK_INT(cfg->qualify.interval, 0);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "qualify: {interval: 30, maxms: 500}\n"), 0);
	if (cfg) {
		CHECK_INT(cfg->qualify.interval, 30);
		CHECK_INT(cfg->qualify.maxms, 500);
		CHECK_INT(cfg->qualify.timeout, 5000);
		CHECK_INT(cfg->qualify.rate, 100);
		CHECK_INT(cfg->qualify.remove_unreachable_after, 0);
	}
	config_free(&cfg);
	check_refused("qualify: {interval: 2, timeout: 2000}\n", 1, "qualify.timeout",
		      "not below the interval", __LINE__);
	check_refused("qualify: {rate: 0}\n", 1, "qualify.rate", NULL, __LINE__);
	check_refused("qualify: {pings: 3}\n", 1, "", "pings", __LINE__);
}

static void test_auth_off_scalar_disables_auth(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "domains: [a.example]\nauth: off\nusers: [{user: u}]\n"), 0);
	if (!cfg) {
		printf("#   %s\n", errbuf);
		check_case_failed = 1;
		return;
	}
	CHECK(!cfg->auth.enabled);
	CHECK_INT(cfg->auth.nonce_ttl, 300);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "auth: on\n"), 0);
	CHECK(cfg && cfg->auth.enabled);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "auth: {enabled: false}\n"), 0);
	CHECK(cfg && !cfg->auth.enabled);
	config_free(&cfg);
	/* user_agents replaces the default rules; [] leaves none. */
	CHECK_INT(load(&cfg, "auth: {user_agents: []}\n"), 0);
	CHECK(cfg && cfg->auth.n_user_agents == 0 && cfg->auth.user_agents == NULL);
	config_free(&cfg);
	REFUSED("auth: maybe\n", 1, "auth", "got \"maybe\"");
}

/* A quoted word keeps its meaning: `auth: "off"` is what a YAML 1.2 tool writes for off,
 * and the error message for a boolean names the words without quotes. */
static void test_quoted_boolean_words_keep_their_meaning(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "auth: \"off\"\n"), 0);
	CHECK(cfg && !cfg->auth.enabled);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "auth: 'On'\n"), 0);
	CHECK(cfg && cfg->auth.enabled);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "auth: {enabled: \"false\"}\n"), 0);
	CHECK(cfg && !cfg->auth.enabled);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "domains: [a.example]\n"
			     "users: [{user: k, auth: \"off\", enabled: 'TRUE'}]\n"),
		  0);
	CHECK(cfg && n_users(cfg) == 1 && user_at(cfg, 0)->auth_off && user_at(cfg, 0)->enabled);
	config_free(&cfg);
	/* Quoting does not make other text a boolean, nor does a NUL hide the rest. */
	REFUSED("auth: \"maybe\"\n", 1, "auth", "expected on, off or a mapping");
	REFUSED("auth: \"off\\0x\"\n", 1, "auth", "expected on, off or a mapping");
	REFUSED("auth: {enabled: \"\"}\n", 1, "auth.enabled", "expected true or false");
}

static void test_user_auth_off_needs_no_secret(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "domains: [a.example]\nusers:\n  - {user: phone, auth: off}\n"),
		  0);
	CHECK(cfg && n_users(cfg) == 1 && user_at(cfg, 0)->auth_off);
	config_free(&cfg);
	/* A user in an auth.off_domains domain needs none either. */
	CHECK_INT(load(&cfg, "domains: [a.example, dev.example]\n"
			     "auth: {off_domains: [DEV.example]}\n"
			     "users: [{user: t, domain: dev.example}]\n"),
		  0);
	CHECK(cfg && n_users(cfg) == 1);
	config_free(&cfg);
	REFUSED("domains: [a.example]\nusers:\n  - {user: phone}\n", 3, "users[0]",
		"needs password");
}

static void test_listen_ipv6_and_ipv4(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "listen: [\"tcp://[::1]:5070\", \"udp://[fe80::1]:1\", "
			     "udp://127.0.0.2:65535]\n"),
		  0);
	if (!cfg)
		return;
	CHECK_INT(cfg->n_listen, 3);
	CHECK_INT(cfg->listen[0].proto, SIP_PROTO_TCP);
	CHECK_STR(cfg->listen[0].addr, "::1");
	CHECK_INT(cfg->listen[0].port, 5070);
	CHECK_STR(cfg->listen[1].addr, "fe80::1");
	CHECK_INT(cfg->listen[1].port, 1);
	CHECK_STR(cfg->listen[2].addr, "127.0.0.2");
	CHECK_INT(cfg->listen[2].port, 65535);
	config_free(&cfg);
}

static void test_listen_errors_are_refused(void)
{
	REFUSED("listen:\n  - udp://127.0.0.1:5060\n  - tls://127.0.0.1:5061\n", 3, "listen[1]",
		"tls:// is not supported yet");
	REFUSED("listen: [udp://localhost:5060]\n", 1, "listen[0]", "not a numeric");
	REFUSED("listen: [udp://127.0.0.1:0]\n", 1, "listen[0]", "1..65535");
	REFUSED("listen: [udp://127.0.0.1:65536]\n", 1, "listen[0]", "1..65535");
	REFUSED("listen: [udp://127.0.0.1]\n", 1, "listen[0]", "udp://ADDR:PORT");
	REFUSED("listen: [udp://::1:5060]\n", 1, "listen[0]", "brackets");
	REFUSED("listen: [sctp://127.0.0.1:5060]\n", 1, "listen[0]", "udp://ADDR:PORT");
	REFUSED("listen: []\n", 1, "listen", "at least one");
	REFUSED("listen: udp://127.0.0.1:5060\n", 1, "listen", "expected a list");
	REFUSED("listen: [udp://127.0.0.1:5060, udp://127.0.0.1:5060]\n", 1, "listen[1]",
		"twice");
}

static void test_operator_keys_land_and_are_checked(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "log: {target: syslog}\n"
			     "metrics: {listen: \"[::1]:9100\", health_window: 7}\n"
			     "debug: {ip: [127.0.0.1, \"0:0:0:0:0:0:0:1\"]}\n"
			     "user: sipreg\ngroup: sipreg-g\n"
			     "control: {socket: /tmp/x.sock, group: ops}\n"),
		  0);
	if (!cfg)
		return;
	CHECK_INT(cfg->log_target, LOG_TARGET_SYSLOG);
	CHECK_STR(cfg->metrics.addr, "::1");
	CHECK_INT(cfg->metrics.port, 9100);
	CHECK_INT(cfg->metrics.health_window, 7);
	CHECK_INT(cfg->n_debug_ips, 2);
	CHECK_STR(cfg->debug_ips[1], "::1"); /* the form a source address is written in */
	CHECK_STR(cfg->run_user, "sipreg");
	CHECK_STR(cfg->run_group, "sipreg-g");
	CHECK_STR(cfg->control_group, "ops");
	config_free(&cfg);
	/* A bare port is loopback; nothing configured is no endpoint. */
	CHECK_INT(load(&cfg, "metrics: {listen: 9090}\n"), 0);
	if (cfg) {
		CHECK_STR(cfg->metrics.addr, "127.0.0.1");
		CHECK_INT(cfg->metrics.port, 9090);
		CHECK_INT(cfg->metrics.health_window, 5);
	}
	config_free(&cfg);
	CHECK_INT(load(&cfg, "{}\n"), 0);
	if (cfg)
		CHECK_INT(cfg->metrics.port, 0);
	config_free(&cfg);
	REFUSED("log: {target: file}\n", 1, "log.target", "stderr or syslog");
	REFUSED("metrics: {listen: localhost:9090}\n", 1, "metrics.listen", "numeric");
	REFUSED("metrics: {listen: \"::1:9090\"}\n", 1, "metrics.listen", "[ADDR]:PORT");
	REFUSED("metrics: {listen: 127.0.0.1:0}\n", 1, "metrics.listen", "PORT");
	REFUSED("metrics: {listen: 127.0.0.1:70000}\n", 1, "metrics.listen", "PORT");
	REFUSED("debug: {ip: [example.com]}\n", 1, "debug.ip[0]", "numeric IP address");
	REFUSED("debug: {ip: 127.0.0.1}\n", 1, "debug.ip", "expected a list");
}

static void test_registrar_values_are_checked(void)
{
	REFUSED("# comment\n\nregistrar:\n  min_expires: abc\n", 4, "registrar.min_expires",
		"expected an integer 0..4294967295, got \"abc\"");
	REFUSED("registrar:\n  max_expires: -1\n", 2, "registrar.max_expires", "got \"-1\"");
	REFUSED("registrar:\n  max_expires: 4294967296\n", 2, "registrar.max_expires", NULL);
	REFUSED("registrar:\n  max_contacts: \"10\"\n", 2, "registrar.max_contacts",
		"expected an integer");
	REFUSED("registrar:\n  min_expires: 600\n  max_expires: 300\n  default_expires: 400\n",
		2, "registrar.min_expires", "above max_expires");
	REFUSED("registrar:\n  max_expires: 30\n", 2, "registrar.max_expires",
		"above max_expires");
	REFUSED("registrar:\n  min_expires: 60\n  default_expires: 10\n", 3,
		"registrar.default_expires", "outside");
	REFUSED("registrar:\n  max_expires: 600\n", 2, "registrar.max_expires",
		"below default_expires (3600)");
	REFUSED("registrar:\n  min_expires: 4000\n  max_expires: 8000\n", 2,
		"registrar.min_expires", "above default_expires (3600)");
	REFUSED("registrar:\n  max_contacts_status: 404\n", 2, "registrar.max_contacts_status",
		"expected 403 or 503");
	REFUSED("registrar:\n  unknown_domain: 503\n", 2, "registrar.unknown_domain",
		"expected 403 or 404");
	REFUSED("registrar:\n  unknown_user: forbidden\n", 2, "registrar.unknown_user",
		"expected 403 or 404");
	REFUSED("registrar: 5\n", 1, "registrar", "expected a mapping");
}

/* A UDP datagram cannot carry more than 65535 bytes, and the UDP path sizes a buffer per
 * datagram by max_message_size: beyond that the value is refused, at it accepted. */
static void test_max_message_size_is_bounded_by_a_udp_datagram(void)
{
	struct config *cfg = NULL;

	REFUSED("limits:\n  max_message_size: 65536\n", 2, "limits.max_message_size",
		"65536 is more than a UDP datagram can carry; at most 65535");
	REFUSED("limits:\n  max_message_size: 4294967295\n", 2, "limits.max_message_size",
		"more than a UDP datagram can carry");
	REFUSED("limits:\n  max_message_size: 511\n", 2, "limits.max_message_size",
		"expected an integer 512..");
	CHECK_INT(load(&cfg, "limits:\n  max_message_size: 65535\n"), 0);
	if (cfg)
		CHECK_INT(cfg->limits.max_message_size, 65535);
	config_free(&cfg);
}

static void test_tcp_output_and_source_limits_are_checked(void)
{
	struct config *cfg = NULL;

	REFUSED("limits:\n  tcp_output_budget: 1000\n", 2, "limits.tcp_output_budget",
		"expected an integer 4096..");
	REFUSED("limits:\n  tcp_output_timeout: 3601\n", 2, "limits.tcp_output_timeout",
		"expected an integer 0..3600");
	REFUSED("limits:\n  tcp_output_budget: 100000\n  tcp_max_output: 200000\n", 3,
		"limits.tcp_max_output", "200000 is above tcp_output_budget (100000)");
	/* A budget below the default share takes the share down with it. */
	CHECK_INT(load(&cfg, "limits:\n  tcp_output_budget: 100000\n"
			     "  max_tcp_connections_per_source: 0\n  tcp_output_timeout: 0\n"),
		  0);
	if (cfg) {
		CHECK_INT(cfg->limits.tcp_output_budget, 100000);
		CHECK_INT(cfg->limits.tcp_max_output, 100000);
		CHECK_INT(cfg->limits.max_tcp_connections_per_source, 0);
		CHECK_INT(cfg->limits.tcp_output_timeout, 0);
	}
	config_free(&cfg);
}

static void test_unknown_keys_are_refused(void)
{
	REFUSED("domains: [a.example]\nregistar:\n  max_expires: 10\n", 2, "registar",
		"unknown key");
	REFUSED("registrar:\n  max_expire: 10\n", 2, "registrar.max_expire", "max_expires");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, password: x}\n"
		"  - {user: b, pasword: x}\n",
		4, "users[1].pasword", "unknown key");
	REFUSED("auth:\n  ban: {max_failures: 3, actoin: drop}\n", 2, "auth.ban.actoin",
		"unknown key");
	REFUSED("location: {backend: pg, conn: x}\n", 1, "location.conn", "unknown key");
	REFUSED("log: {lvl: debug}\n", 1, "log.lvl", NULL);
	REFUSED("limits:\n  max_msg_size: 10\n", 2, "limits.max_msg_size", NULL);
	REFUSED("registrar: {min_expires: 1}\nregistrar: {min_expires: 2}\n", 2, "registrar",
		"duplicate key (first on line 1)");
}

static void test_wrong_types_are_refused(void)
{
	REFUSED("domains: example.com\n", 1, "domains", "expected a list");
	REFUSED("users: {user: a}\n", 1, "users", "expected a list");
	REFUSED("domains: [a.example]\nusers: [alice]\n", 2, "users[0]", "expected a mapping");
	REFUSED("instance_id: [a, b]\n", 1, "instance_id", "got a list");
	REFUSED("instance_id: \"a b\"\n", 1, "instance_id", "spaces");
	REFUSED("domains: [a.example]\nusers: [{user: a, password: x, enabled: maybe}]\n", 2,
		"users[0].enabled", "expected true or false");
	REFUSED("auth: {nonce_ttl: 0}\n", 1, "auth.nonce_ttl", "1..4294967295");
	REFUSED("auth: {secret_file: }\n", 1, "auth.secret_file", "got nothing");
	REFUSED("auth: {ban: {action: 404}}\n", 1, "auth.ban.action", "expected 403 or drop");
	REFUSED("auth:\n  algorithms: [SHA-1]\n", 2, "auth.algorithms[0]",
		"expected MD5 or SHA-256, got \"SHA-1\"");
	REFUSED("auth:\n  algorithms: [MD5, md5]\n", 2, "auth.algorithms[1]", "twice");
	REFUSED("auth:\n  algorithms: []\n", 2, "auth.algorithms", "needs MD5");
	REFUSED("auth:\n  algorithms: MD5\n", 2, "auth.algorithms", "expected a list");
	REFUSED("auth:\n  user_agents: {match: x}\n", 2, "auth.user_agents", "expected a list");
	REFUSED("auth:\n  user_agents: [{match: x}]\n", 2, "auth.user_agents[0]",
		"needs match and algorithms");
	REFUSED("auth:\n  user_agents: [{match: \"\", algorithms: [MD5]}]\n", 2,
		"auth.user_agents[0].match", "non-empty string");
	REFUSED("auth:\n  user_agents: [{match: x, algorithms: [SHA-1]}]\n", 2,
		"auth.user_agents[0].algorithms[0]", "expected MD5 or SHA-256");
	REFUSED("auth:\n  user_agents: [{match: x, algorithms: [MD5]}, {match: y, "
		"algorithms: [MD5], extra: 1}]\n",
		2, "auth.user_agents[1].extra", "unknown key");
	REFUSED("log: {level: verbose}\n", 1, "log.level", "got \"verbose\"");
	REFUSED("limits: {max_message_size: 100}\n", 1, "limits.max_message_size", "512..");
	REFUSED("limits: {max_queue_delay_ms: 40000}\n", 1, "limits.max_queue_delay_ms",
		"..32000");
	REFUSED("limits: {max_backend_delay_ms: 40000}\n", 1, "limits.max_backend_delay_ms",
		"..32000");
	REFUSED("domains: [a.example]\ndirectory:\n  backend: pg\n", 3, "directory",
		"needs conninfo");
	REFUSED("location: {backend: pg, conninfo: x, pool: many}\n", 1, "location.pool",
		"got \"many\"");
	/* Each backend reads its own keys: the memory backend has none but backend. */
	REFUSED("location: {pool: 4}\n", 1, "location.pool", "unknown key (known: backend)");
	REFUSED("directory: memory\n", 1, "directory", "expected a mapping");
	REFUSED("domains: [\"bad domain\"]\n", 1, "domains[0]", "not a domain");
	REFUSED("domains: [a.example, A.EXAMPLE]\n", 1, "domains[1]", "duplicate domain");
	REFUSED("- a\n- b\n", 1, "", "expected a mapping");
}

static void test_trusted_sources_are_checked(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "trusted_sources: []\n"), 0);
	CHECK(cfg && netaddr_set_count(cfg->trusted_sources) == 0);
	config_free(&cfg);
	CHECK_INT(load(&cfg, "trusted_sources:\n  - 127.0.0.4\n  - \"::1\"\n"), 0);
	CHECK(cfg && netaddr_set_contains_str(cfg->trusted_sources, "127.0.0.4") &&
	      netaddr_set_contains_str(cfg->trusted_sources, "::1") &&
	      !netaddr_set_contains_str(cfg->trusted_sources, "127.0.0.5"));
	config_free(&cfg);
	REFUSED("trusted_sources: 10.0.0.0/8\n", 1, "trusted_sources", "expected a list");
	REFUSED("trusted_sources: [sbc.example.com]\n", 1, "trusted_sources[0]",
		"expected an IPv4 or IPv6 address or prefix");
	REFUSED("trusted_sources: [10.0.0.0/8, [a]]\n", 1, "trusted_sources[1]", "got a list");
	REFUSED("trusted_sources: [10.0.0.0/33]\n", 1, "trusted_sources[0]", "at most 32");
	REFUSED("trusted_sources:\n  - 10.0.0.0/8\n  - 10.1.2.3/8\n", 3, "trusted_sources[1]",
		"bits set past the prefix length (the network is 10.0.0.0/8)");
	REFUSED("trusted_sources: [192.0.2.7, 192.0.2.7/32]\n", 1, "trusted_sources[1]",
		"192.0.2.7/32 listed twice");
}

static void test_users_are_validated(void)
{
	REFUSED("users:\n  - {user: alice, password: x}\n", 2, "users[0]", "no domains");
	REFUSED("domains: [a.example]\nusers:\n  - {user: alice, domain: b.example, "
		"password: x}\n",
		3, "users[0].domain", "not one of domains");
	REFUSED("domains: [a.example]\nusers:\n  - {password: x}\n", 3, "users[0]",
		"missing \"user\"");
	REFUSED("domains: [a.example]\nusers:\n  - {user: alice@a.example, password: x}\n", 3,
		"users[0].user", "domain");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, ha1_md5: abc}\n", 3,
		"users[0].ha1_md5", "32 hex digits");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, ha1_md5: "
		"0123456789abcdef0123456789abcdeg}\n",
		3, "users[0].ha1_md5", "32 hex digits");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, ha1_sha256: "
		"0123456789abcdef0123456789abcdef}\n",
		3, "users[0].ha1_sha256", "64 hex digits");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, password: x, aliases: [b]}\n", 3,
		"users[0].aliases[0]", "user@domain");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, password: x, aliases: "
		"[b@c.example]}\n",
		3, "users[0].aliases[0]", "not one of domains");
	REFUSED("domains: [a.example]\nusers:\n  - {user: a, password: x, max_contacts: x}\n",
		3, "users[0].max_contacts", NULL);
	REFUSED("domains: [a.example]\nauth: {off_domains: [b.example]}\n", 2,
		"auth.off_domains[0]", "not one of domains");
}

static void test_duplicate_users_are_refused(void)
{
	REFUSED("domains: [a.example, b.example]\nusers:\n"
		"  - {user: alice, password: x}\n"
		"  - {user: bob, password: y}\n"
		"  - {user: alice, domain: b.example, password: z}\n",
		5, "users[2]", "duplicate user \"alice@b.example\" (users[0])");
	REFUSED("domains: [a.example, b.example]\nusers:\n"
		"  - {user: carol, domain: A.example, password: x}\n"
		"  - {user: carol, domain: a.example, password: y}\n",
		4, "users[1]", "duplicate user");
	/* Same name in two different domains is two users. */
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "domains: [a.example, b.example]\nusers:\n"
			     "  - {user: carol, domain: a.example, password: x}\n"
			     "  - {user: carol, domain: b.example, password: y}\n"
			     "  - {user: Carol, domain: b.example, password: z}\n"),
		  0);
	CHECK(cfg && n_users(cfg) == 3);
	config_free(&cfg);
}

/* The duplicate check is a hash set: 100000 users load at once, and a clash among them
 * still names the first entry it collides with (here one valid in every domain). */
static void test_many_users_load_and_duplicates_found(void)
{
	size_t n = 100000, cap = n * 64 + 256, len = 0;
	char *yaml = malloc(cap);
	struct config *cfg = NULL;

	CHECK(yaml != NULL);
	if (!yaml)
		return;
	len += (size_t)snprintf(yaml + len, cap - len,
				"domains: [a.example, b.example]\nusers:\n"
				"  - {user: u7, domain: b.example, password: p}\n");
	for (size_t i = 0; i < n; i++)
		len +=
		    (size_t)snprintf(yaml + len, cap - len,
				     "  - {user: u%zu, domain: a.example, password: p}\n", i);
	CHECK_INT(config_load_string(&cfg, yaml, len, "t.yaml", errbuf, sizeof(errbuf)), 0);
	CHECK(cfg && n_users(cfg) == n + 1);
	config_free(&cfg);
	len += (size_t)snprintf(yaml + len, cap - len, "  - {user: u7, password: p}\n");
	CHECK_INT(config_load_string(&cfg, yaml, len, "t.yaml", errbuf, sizeof(errbuf)),
		  EINVAL);
	CHECK(strstr(errbuf, "users[100001]: duplicate user \"u7\" (users[0])") != NULL);
	config_free(&cfg);
	free(yaml);
}

static void test_yaml_syntax_error_names_line(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "domains: [a.example]\nregistrar:\n  min_expires: [1\n"), EINVAL);
	CHECK(cfg == NULL);
	CHECK(strncmp(errbuf, "t.yaml:", 7) == 0);
	CHECK(strstr(errbuf, "YAML syntax error") != NULL);
	CHECK_INT(load(&cfg, "a: 1\n---\nb: 2\n"), EINVAL);
	CHECK(strstr(errbuf, "t.yaml:2: only one YAML document") != NULL);
	config_free(&cfg);
}

static void test_config_domain_known_ignores_case(void)
{
	struct config *cfg = NULL;

	CHECK_INT(load(&cfg, "domains: [Example.com, 127.0.0.1]\n"), 0);
	if (!cfg)
		return;
	CHECK(config_domain_known(cfg, "example.com", 11));
	CHECK(config_domain_known(cfg, "EXAMPLE.COM", 11));
	CHECK(config_domain_known(cfg, "example.comX", 11));
	CHECK(!config_domain_known(cfg, "example.co", 10));
	CHECK(!config_domain_known(cfg, "example.comX", 12));
	CHECK(config_domain_known(cfg, "127.0.0.1", 9));
	CHECK(!config_domain_known(cfg, "other.example", 13));
	config_free(&cfg);
}

static void test_config_load_missing_file_is_enoent(void)
{
	struct config *cfg = (struct config *)&cfg;

	CHECK_INT(config_load(&cfg, "/nonexistent/sipregd.yaml", errbuf, sizeof(errbuf)),
		  ENOENT);
	CHECK(cfg == NULL);
	CHECK(strstr(errbuf, "/nonexistent/sipregd.yaml") != NULL);
}

static void test_config_load_file_names_file_in_errors(void)
{
	char path[] = "/tmp/sipreg-test-config-XXXXXX";
	const char bad[] = "domains: [a.example]\nlog:\n  level: loud\n";
	const char good[] = "domains: [a.example]\n";
	struct config *cfg = NULL;
	FILE *f;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	f = fdopen(fd, "w");
	CHECK(f != NULL);
	if (!f) {
		close(fd);
		unlink(path);
		return;
	}
	fputs(bad, f);
	fclose(f);
	CHECK_INT(config_load(&cfg, path, errbuf, sizeof(errbuf)), EINVAL);
	CHECK(strncmp(errbuf, path, strlen(path)) == 0);
	CHECK(strstr(errbuf, ":3: log.level: ") != NULL);
	f = fopen(path, "w");
	if (f) {
		fputs(good, f);
		fclose(f);
	}
	CHECK_INT(config_load(&cfg, path, errbuf, sizeof(errbuf)), 0);
	CHECK(cfg && cfg->path && strcmp(cfg->path, path) == 0);
	config_free(&cfg);
	unlink(path);
}

/* The config a new operator starts from must load (path relative to this source file). */
static void test_shipped_config_loads(void)
{
	char path[PATH_MAX];
	const char *src = __FILE__, *slash = strrchr(src, '/');
	struct config *cfg = NULL;
	int rc;

	snprintf(path, sizeof(path), "%.*s/../../config/sipregd.yaml",
		 slash ? (int)(slash - src) : 1, slash ? src : ".");
	rc = config_load(&cfg, path, errbuf, sizeof(errbuf));
	CHECK_INT(rc, 0);
	if (rc) {
		printf("#   %s\n", errbuf);
		return;
	}
	CHECK(cfg->auth.enabled);
	/* The same challenges as the built-in defaults. */
	CHECK_INT(cfg->auth.n_algorithms, 1);
	CHECK_INT(cfg->auth.algorithms[0], DIGEST_MD5);
	CHECK_INT(cfg->auth.n_user_agents, 1);
	if (cfg->auth.n_user_agents == 1) {
		CHECK_STR(cfg->auth.user_agents[0].match, AUTH_UA_DEFAULT_MATCH);
		CHECK_INT(cfg->auth.user_agents[0].n_algorithms, 2);
		CHECK_INT(cfg->auth.user_agents[0].algorithms[0], DIGEST_SHA256);
	}
	CHECK(config_domain_known(cfg, "127.0.0.1", 9));
	CHECK(n_users(cfg) >= 3);
	CHECK_STR(location_conf_backend(cfg->location), "memory");
	config_free(&cfg);
}

int main(void)
{
	log_set_level(LOG_ERR);
	RUN(test_full_example_sets_every_field);
	RUN(test_empty_config_gets_every_default);
	RUN(test_partial_sections_keep_other_defaults);
	RUN(test_qualify_section_turns_qualify_on_with_defaults);
	RUN(test_auth_off_scalar_disables_auth);
	RUN(test_quoted_boolean_words_keep_their_meaning);
	RUN(test_user_auth_off_needs_no_secret);
	RUN(test_listen_ipv6_and_ipv4);
	RUN(test_listen_errors_are_refused);
	RUN(test_operator_keys_land_and_are_checked);
	RUN(test_registrar_values_are_checked);
	RUN(test_max_message_size_is_bounded_by_a_udp_datagram);
	RUN(test_tcp_output_and_source_limits_are_checked);
	RUN(test_unknown_keys_are_refused);
	RUN(test_wrong_types_are_refused);
	RUN(test_trusted_sources_are_checked);
	RUN(test_users_are_validated);
	RUN(test_duplicate_users_are_refused);
	RUN(test_many_users_load_and_duplicates_found);
	RUN(test_yaml_syntax_error_names_line);
	RUN(test_config_domain_known_ignores_case);
	RUN(test_config_load_missing_file_is_enoent);
	RUN(test_config_load_file_names_file_in_errors);
	RUN(test_shipped_config_loads);
	CHECK_DONE();
}
